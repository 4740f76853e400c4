import assert from "node:assert/strict";
import { parseUdpSnmp } from "./udp_snmp.ts";

const SNMP = `Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 27
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 1200 3 950 1180 950 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
`;

Deno.test("udp snmp: reads the Udp counters by name, not UdpLite's", () => {
  const u = parseUdpSnmp(SNMP);
  assert.equal(u.RcvbufErrors, 950);
  assert.equal(u.InDatagrams, 1200);
  assert.equal(u.MemErrors, 0);
});

Deno.test("udp snmp: no Udp lines gives no counters", () => {
  assert.deepEqual(parseUdpSnmp("Ip: a\nIp: 1\n"), {});
});

Deno.test("udp snmp: this machine's /proc/net/snmp has RcvbufErrors", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  const u = parseUdpSnmp(await Deno.readTextFile("/proc/net/snmp"));
  assert.ok(Number.isInteger(u.RcvbufErrors), JSON.stringify(u));
});

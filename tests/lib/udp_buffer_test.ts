import assert from "node:assert/strict";
import {
  assessUdpBuffer,
  needsRaise,
  parseUdpSnmp,
  sysctlCommand,
  sysctlDropIn,
} from "../../lib/udp_buffer.ts";

// /proc/net/snmp as Linux 6.x prints it (Ip/Icmp rows shortened).
const SNMP = `Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 123
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 226502 198 56793 283615 56790 3 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
`;

Deno.test("udp_buffer: RcvbufErrors is read from the Udp rows, not UdpLite", () => {
  assert.deepEqual(parseUdpSnmp(SNMP), { receiveBufferErrors: 56790, sendBufferErrors: 3 });
});

Deno.test("udp_buffer: a /proc/net/snmp without the counter gives undefined", () => {
  assert.equal(parseUdpSnmp(""), undefined);
  assert.equal(parseUdpSnmp("Udp: InDatagrams NoPorts\nUdp: 1 2\n"), undefined);
  assert.equal(parseUdpSnmp("Udp: RcvbufErrors\n"), undefined);
});

Deno.test("udp_buffer: this machine's /proc/net/snmp has RcvbufErrors", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  const u = parseUdpSnmp(await Deno.readTextFile("/proc/net/snmp"));
  assert.ok(Number.isInteger(u?.receiveBufferErrors), JSON.stringify(u));
});

Deno.test("udp_buffer: Linux's doubled report is halved; at the target there is no warning", () => {
  const v = assessUdpBuffer({
    target: 7_500_000,
    reportedReceive: 15_000_000,
    reportedSend: 15_000_000,
  });
  assert.deepEqual(v, { receiveBytes: 7_500_000, sendBytes: 7_500_000 });
});

Deno.test("udp_buffer: below the target the warning gives the exact sysctl", () => {
  const v = assessUdpBuffer({
    target: 7_500_000,
    reportedReceive: 2 * 4_194_304,
    reportedSend: 15_000_000,
  });
  assert.equal(v.receiveBytes, 4_194_304);
  assert.ok(v.warning?.includes("sysctl -w net.core.rmem_max=7500000 net.core.wmem_max=7500000"));
  assert.ok(v.warning?.includes("4194304 (receive)"));
});

Deno.test("udp_buffer: a buffer already at or above the target is left alone", () => {
  assert.equal(needsRaise(15_000_000, 7_500_000), false);
  assert.equal(needsRaise(425_984, 7_500_000), true);
});

Deno.test("udp_buffer: the sysctl command and drop-in name both limits", () => {
  assert.equal(sysctlCommand(8), "sysctl -w net.core.rmem_max=8 net.core.wmem_max=8");
  const dropIn = sysctlDropIn(7_500_000);
  assert.match(dropIn, /^net\.core\.rmem_max = 7500000$/m);
  assert.match(dropIn, /^net\.core\.wmem_max = 7500000$/m);
});

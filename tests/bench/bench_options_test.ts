import assert from "node:assert/strict";
import {
  BenchUsage,
  LOOPBACK_SIZES,
  parseBenchArgs,
  parseLink,
  SMOKE_SIZES,
  WAN_SIZES,
} from "./bench_options.ts";

Deno.test("bench options: links are loopback or RTT/rate/loss, RTT split over both ways", () => {
  assert.deepEqual(parseLink("loopback"), { name: "loopback" });
  assert.deepEqual(parseLink("40ms/100mbit/1%"), {
    name: "40ms/100mbit/1%",
    profile: { delayMs: 20, rateMbit: 100, lossPct: 1 },
  });
  assert.deepEqual(parseLink("100ms/50mbit/0.5%").profile, {
    delayMs: 50,
    rateMbit: 50,
    lossPct: 0.5,
  });
  assert.throws(() => parseLink("40ms/100mbit"), /neither "loopback" nor RTTms\/RATEmbit\/LOSS%/);
  assert.throws(() => parseLink("40ms/100mbit/101%"), /loss over 100%/);
});

Deno.test("bench options: defaults measure the issue's links with its sizes", () => {
  const o = parseBenchArgs([]);
  assert.deepEqual(o.links.map((l) => l.name), [
    "loopback",
    "40ms/100mbit/0%",
    "40ms/100mbit/1%",
    "100ms/50mbit/0.5%",
  ]);
  assert.deepEqual(o.paths, ["direct", "ssh", "flor"]);
  assert.equal(o.repeats, 1);
  assert.deepEqual(o.loopback, LOOPBACK_SIZES);
  assert.deepEqual(o.wan, WAN_SIZES);
  assert.equal(o.loopback.concurrent, 200);
  assert.equal(o.wan.concurrent, 50);
  assert.equal(o.loopback.warmupConnects, 1_000);
});

Deno.test("bench options: --smoke is tiny and one WAN link; flags override sizes", () => {
  const s = parseBenchArgs(["--smoke", "--json", "/tmp/x.json"]);
  assert.equal(s.smoke, true);
  assert.equal(s.json, "/tmp/x.json");
  assert.deepEqual(s.links.map((l) => l.name), ["40ms/100mbit/1%"]);
  assert.deepEqual(s.wan, SMOKE_SIZES);
  const o = parseBenchArgs([
    ...["--links", "loopback", "--paths", "ssh,flor", "--repeats", "3", "--flow-mib", "8"],
    ...["--concurrent", "20", "--latency", "10", "--warmup", "0"],
  ]);
  assert.deepEqual(o.paths, ["ssh", "flor"]);
  assert.equal(o.repeats, 3);
  assert.equal(o.loopback.flowBytes, 8 * 1024 * 1024);
  assert.equal(o.wan.flowBytes, 8 * 1024 * 1024);
  assert.equal(o.loopback.concurrent, 20);
  assert.equal(o.loopback.latencyCount, 10);
  assert.equal(o.loopback.warmupConnects, 0);
  assert.equal(o.wan.warmupConnects, 0);
  assert.equal(o.loopback.flowMaxSeconds, LOOPBACK_SIZES.flowMaxSeconds);
});

Deno.test("bench options: bad values are refused with the flag's name", () => {
  assert.throws(() => parseBenchArgs(["--repeats", "0"]), /--repeats 0 must be a number ≥ 1/);
  assert.throws(() => parseBenchArgs(["--concurrent", "x"]), /--concurrent x/);
  assert.throws(() => parseBenchArgs(["--paths", "direct,vpn"]), /unknown path "vpn"/);
  assert.throws(() => parseBenchArgs(["--bogus"]), /bogus/);
  assert.throws(() => parseBenchArgs(["--help"]), BenchUsage);
});

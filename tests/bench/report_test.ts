import assert from "node:assert/strict";
import {
  evaluateTargets,
  formatTable,
  formatTargets,
  median,
  type PathRun,
  percentile,
  range,
  ratios,
} from "./report.ts";

function run(p: Partial<PathRun> & Pick<PathRun, "link" | "path">): PathRun {
  return {
    repeat: 0,
    coldMs: 100,
    latencyMedianMs: 1,
    latencyP99Ms: 2,
    flowBytes: 1e6,
    flowMBps: 10,
    concurrent: { n: 50, bytesEach: 1024 * 1024, seconds: 5, completed: 50 },
    peakRssMb: {},
    udpRcvbufErrors: 0,
    ...p,
  };
}

Deno.test("report: median, percentile and range", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
  const xs = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(xs, 0.99), 100);
  assert.equal(percentile(xs, 0.5), 51);
  assert.equal(percentile([7], 0.99), 7);
  assert.equal(range([2.5]), "2.50");
  assert.equal(range([11.62, 9.2]), "9.20-11.6");
  assert.equal(range([241, 238.4]), "238-241");
  assert.equal(range([0, 0]), "0");
  assert.equal(range([NaN]), "-");
});

Deno.test("report: ratios pair Florete and ssh runs of the same repeat", () => {
  const runs = [
    run({ link: "l", path: "ssh", repeat: 0, flowMBps: 10 }),
    run({ link: "l", path: "ssh", repeat: 1, flowMBps: 8 }),
    run({ link: "l", path: "flor", repeat: 1, flowMBps: 4 }),
    run({ link: "l", path: "flor", repeat: 0, flowMBps: 5 }),
    run({ link: "other", path: "ssh", repeat: 0, flowMBps: 1 }),
  ];
  assert.deepEqual(ratios(runs, "l", (r) => r.flowMBps), [0.5, 0.5]);
  assert.deepEqual(ratios(runs, "other", (r) => r.flowMBps), []);
});

Deno.test("report: the table has one row per path and a Florete/ssh ratio row", () => {
  const runs = [
    run({ link: "40ms/100mbit/0%", path: "direct", flowMBps: 11.6 }),
    run({
      link: "40ms/100mbit/0%",
      path: "ssh",
      flowMBps: 11.5,
      peakRssMb: { ssh: 12, sshd: 11 },
    }),
    run({
      link: "40ms/100mbit/0%",
      path: "flor",
      flowMBps: 5.75,
      peakRssMb: { "user agent": 99, "node agent": 130 },
      udpRcvbufErrors: 950,
      concurrent: { n: 50, bytesEach: 1024 * 1024, seconds: 60, completed: 31 },
    }),
  ];
  const t = formatTable([{
    name: "40ms/100mbit/0%",
    congestion: { tcpClient: "bbr", tcpServer: "bbr", flor: "cubic" },
  }], runs);
  const lines = t.split("\n");
  assert.equal(lines.length, 6, t);
  assert.match(lines[2], /direct TCP +\| 11\.6 /);
  assert.match(lines[3], /ssh -D .*ssh 12, sshd 11 /);
  // An unfinished N × 1 MiB shows its cap with "+": the true time is longer.
  assert.match(
    lines[4],
    /Florete .*50 × 1 MiB: 60\+ .*user agent 99, node agent 130 .*\| 950/,
  );
  assert.match(lines[5], /Florete\/ssh +\| 0\.50 +\| 12\.00 /);
});

Deno.test("report: targets pass and fail by the issue's thresholds", () => {
  const wan = "40ms/100mbit/1%";
  const runs = [
    run({ link: wan, path: "ssh", flowMBps: 10 }),
    run({ link: wan, path: "flor", flowMBps: 9.1, udpRcvbufErrors: 3 }),
    run({
      link: "loopback",
      path: "ssh",
      concurrent: { n: 200, bytesEach: 1, seconds: 1, completed: 200 },
    }),
    run({
      link: "loopback",
      path: "flor",
      latencyMedianMs: 2.1,
      flowMBps: 140,
      peakRssMb: { "user agent": 100, "node agent": 121 },
      concurrent: { n: 200, bytesEach: 1, seconds: 1.4, completed: 200 },
    }),
  ];
  const t = formatTargets(evaluateTargets(runs));
  assert.match(t, /PASS {2}40ms\/100mbit\/1%: one flow Florete\/ssh ≥ 0\.9: 0\.91/);
  assert.match(t, /PASS {2}40ms\/100mbit\/1%: N × 1 MiB time Florete\/ssh ≤ 1\.0: 1\.00/);
  assert.match(t, /FAIL {2}40ms\/100mbit\/1%: node UDP receive overflows = 0: 3/);
  assert.match(t, /PASS {2}loopback: N × 1 MiB time Florete\/ssh ≤ 1\.5: 1\.40/);
  assert.match(t, /FAIL {2}loopback: Florete CONNECT → first byte median ≤ 1\.2 ms: 2\.10/);
  assert.match(
    t,
    /FAIL {2}loopback: peak RSS per agent ≤ 120 MB \(200 concurrent tunnels\): 100-121/,
  );
  assert.match(t, /info {2}loopback: one flow 140 MB\/s = 0\.50 × Deno's QUIC ceiling/);
  assert.doesNotMatch(t, /40ms\/100mbit\/0%/, "links not measured get no lines");
});

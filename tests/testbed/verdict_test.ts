import assert from "node:assert/strict";
import type { AgentSample, FaultOutcome, RequestRecord } from "./model.ts";
import {
  FDS_GROWTH_BOUND,
  isExcused,
  judge,
  RSS_GROWTH_BOUND_MB,
  RSS_WARMUP_S,
  slope,
  summarizeAgent,
  withinBound,
} from "./verdict.ts";

const req = (o: Partial<RequestRecord>): RequestRecord => ({
  start_s: 10,
  end_s: 11,
  principal: "user:u1",
  service: "web1",
  node: "n1",
  kind: "short",
  ok: true,
  latency_ms: 1000,
  ...o,
});

const fault = (o: Partial<FaultOutcome>): FaultOutcome => ({
  kind: "kill-9",
  target: "n1",
  started_s: 20,
  detected_s: 22,
  recovered_s: 26,
  detect_bound_s: 3,
  bound_s: 2,
  recover_from_s: 24,
  ok: true,
  notes: [],
  excuses: [{ from_s: 20, to_s: 28, nodes: ["n1"] }],
  ...o,
});

const steady = (name: string, rss: (t: number) => number, fds = () => 30): AgentSample[] =>
  Array.from(
    { length: 40 },
    (_, i) => ({ name, pid: 100, t_s: i * 5, rss_mb: rss(i * 5), fds: fds() }),
  );

const input = (o: Partial<Parameters<typeof judge>[0]>) => ({
  started_at: "2026-01-01T00:00:00Z",
  shape: { nodes: 2, users: 2, services: 2, minutes: 3, wan: "veth" },
  faults: [],
  requests: [req({})],
  samples: steady("n1", () => 80),
  ...o,
});

Deno.test("verdict: a clean run passes", () => {
  const r = judge(input({ faults: [fault({})] }));
  assert.equal(r.verdict, "pass", r.reasons.join("; "));
  assert.deepEqual(r.requests, { ok: 1, failed: 0, excused: 0, failed_outside_faults: 0 });
});

Deno.test("verdict: a failure on the faulted node inside its window is excused", () => {
  const r = judge(input({
    faults: [fault({})],
    requests: [req({}), req({ start_s: 21, end_s: 22, ok: false, error: "exit 97" })],
  }));
  assert.equal(r.verdict, "pass", r.reasons.join("; "));
  assert.equal(r.requests.excused, 1);
});

Deno.test("verdict: a failure on another node, or after the window, fails the run", () => {
  for (
    const bad of [
      req({ start_s: 21, end_s: 22, node: "n2", ok: false }),
      req({ start_s: 40, end_s: 41, ok: false }),
    ]
  ) {
    const r = judge(input({ faults: [fault({})], requests: [req({}), bad] }));
    assert.equal(r.verdict, "fail");
    assert.equal(r.requests.failed_outside_faults, 1);
    assert.deepEqual(r.unexcused_failures, [bad]);
  }
});

Deno.test("verdict: an excuse scoped to nodes and principals needs both to match", () => {
  const x = [{ from_s: 0, to_s: 100, nodes: ["n1"], principals: ["user:u1"] }];
  assert.ok(isExcused(req({ ok: false }), x));
  assert.ok(!isExcused(req({ ok: false, principal: "lan:printer" }), x));
  assert.ok(!isExcused(req({ ok: false, node: "n2" }), x));
  assert.ok(!isExcused(req({ ok: false }), [{ from_s: 0, to_s: 100 }]), "an unscoped excuse");
});

Deno.test("verdict: a request spanning the window's start is excused", () => {
  assert.ok(isExcused(req({ start_s: 15, end_s: 21, ok: false }), fault({}).excuses));
  assert.ok(!isExcused(req({ start_s: 15, end_s: 19.9, ok: false }), fault({}).excuses));
});

Deno.test("verdict: a fault over its bound fails the run, naming it", () => {
  const r = judge(
    input({ faults: [fault({ ok: false, notes: ["peer.down after 3.4 s (bound 3 s)"] })] }),
  );
  assert.equal(r.verdict, "fail");
  assert.match(r.reasons[0], /kill-9 \(n1\) at 20 s: peer.down after 3.4 s/);
});

Deno.test("verdict: memory growing past the bound fails; the slope is in MB/hour", () => {
  const leak = steady("n1", (t) => 80 + t * 0.5);
  const a = summarizeAgent("n1", leak);
  assert.equal(a.ok, false);
  assert.equal(a.rss_slope_mb_per_h, 1800);
  assert.ok(a.rss_end_mb - a.rss_start_mb >= RSS_GROWTH_BOUND_MB);
  assert.equal(judge(input({ samples: leak })).verdict, "fail");
});

Deno.test("verdict: descriptors growing past the bound fail", () => {
  let n = 30;
  const a = summarizeAgent("n1", steady("n1", () => 80, () => (n += 2)));
  assert.equal(a.ok, false);
  assert.ok(a.fds_end - a.fds_start >= FDS_GROWTH_BOUND);
});

Deno.test("verdict: start-up growth and a restart are not a leak", () => {
  // First process: grows in its warm-up, then is killed; second process starts lower.
  const first = Array.from(
    { length: 6 },
    (_, i) => ({ name: "n1", pid: 1, t_s: i * 5, rss_mb: 40 + i * 20, fds: 20 + i * 5 }),
  );
  const second = Array.from({ length: 20 }, (_, i) => ({
    name: "n1",
    pid: 2,
    t_s: 40 + i * 5,
    rss_mb: i * 5 < RSS_WARMUP_S ? 40 + i * 10 : 85,
    fds: 30,
  }));
  const a = summarizeAgent("n1", [...first, ...second]);
  assert.equal(a.processes, 2);
  assert.equal(a.ok, true, JSON.stringify(a));
  assert.equal(a.rss_start_mb, 85);
});

Deno.test("verdict: an agent never sampled is not ok", () => {
  assert.equal(summarizeAgent("n9", []).ok, false);
});

Deno.test("verdict: a run stopped early or with no successful request fails", () => {
  assert.equal(judge(input({ aborted: "setup failed" })).verdict, "fail");
  assert.equal(judge(input({ requests: [req({ ok: false })] })).verdict, "fail");
});

Deno.test("verdict: slope of a line, of a flat set, of one point", () => {
  assert.equal(slope([[0, 1], [1, 3], [2, 5]]), 2);
  assert.equal(slope([[0, 4], [1, 4]]), 0);
  assert.equal(slope([[3, 4]]), 0);
});

Deno.test("verdict: withinBound says the measure and the bound", () => {
  assert.deepEqual(withinBound("peer.down", 10, 12.5, 3), {
    ok: true,
    note: "peer.down after 2.5 s (bound 3 s)",
  });
  assert.equal(withinBound("peer.down", 10, 13.01, 3).ok, false);
  assert.deepEqual(withinBound("peer.up", 10, null, 3), {
    ok: false,
    note: "peer.up: not observed",
  });
});

Deno.test("verdict: a revoked user's agent is judged until its revocation, then noted", () => {
  // Refused reconnects after the revocation hold sockets until a GC: not judged, but said.
  const samples = steady("u3", () => 80, () => 30).map((s) => s.t_s > 150 ? { ...s, fds: 80 } : s);
  const judged = judge(input({ samples }));
  assert.equal(judged.verdict, "fail", "without retirement the growth counts");
  const r = judge(input({ samples, retired: { u3: 150 } }));
  assert.equal(r.verdict, "pass", r.reasons.join("; "));
  assert.equal(r.agents[0].fds_end, 30);
  assert.match(r.notes[0], /u3 out of service from 150 s .*peaked at 80 \(155 s\)/);
});

Deno.test("verdict: descriptors' slope per hour, and each agent's worst loop lag", () => {
  let n = 30;
  const samples = steady("n1", () => 80, () => (n += 1)).map((s, i) =>
    i % 2 ? s : { ...s, lag_p99_ms: i === 10 ? 900 : 5, lag_max_ms: i === 10 ? 2400 : 20 }
  );
  const a = summarizeAgent("n1", samples);
  assert.equal(a.fds_slope_per_h, 720); // one descriptor per 5 s sample
  assert.equal(a.lag_max_ms, 2400);
  assert.equal(a.lag_p99_ms, 900);
  const quiet = summarizeAgent("n1", steady("n1", () => 80));
  assert.deepEqual([quiet.lag_p99_ms, quiet.lag_max_ms], [null, null]);
});

Deno.test("verdict: the machine's load average, mean and peak (null when not sampled)", () => {
  const load = [{ t_s: 0, load1: 2 }, { t_s: 5, load1: 10.5 }, { t_s: 10, load1: 6 }];
  assert.deepEqual(judge(input({ load })).load, { mean: 6.2, max: 10.5 });
  assert.equal(judge(input({})).load, null);
});

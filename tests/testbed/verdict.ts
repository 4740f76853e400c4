/**
 * The run's verdict, from what was recorded: every fault met its bounds, no request failed
 * outside what a fault excuses, and no agent's memory or descriptors grew past a bound.
 * Pure (records in, summary out), so each rule has a unit test.
 */
import type {
  AgentSample,
  AgentSummary,
  Excuse,
  FaultOutcome,
  LoadSample,
  Report,
  RequestRecord,
} from "./model.ts";

/** Samples in the first seconds of a process are start-up (JIT, caches), not growth. */
export const RSS_WARMUP_S = 20;
/**
 * RSS may grow this much over a run (first to last sample of the last process, after
 * warm-up). Idle agents here sit at 60-90 MB and settle within ~20 MB under the testbed's
 * traffic; a leak of one tunnel's buffers per request would pass this within minutes.
 */
export const RSS_GROWTH_BOUND_MB = 40;
/** Open descriptors may grow this much: the idle connections and peers are opened in the
 * warm-up, so a steady agent stays within a few; a descriptor per request leaks hundreds. */
export const FDS_GROWTH_BOUND = 24;
/** Unexcused failures listed in the report (the count is always complete). */
export const LISTED_FAILURES = 20;

/** A failure is excused by a fault whose window overlaps the request and whose scope
 * (nodes and/or principals; both must match when both are given) covers it. */
export function isExcused(r: RequestRecord, excuses: Excuse[]): boolean {
  return excuses.some((x) =>
    r.start_s <= x.to_s && r.end_s >= x.from_s &&
    (x.nodes !== undefined || x.principals !== undefined) &&
    (x.nodes?.includes(r.node) ?? true) && (x.principals?.includes(r.principal) ?? true)
  );
}

/** Least-squares slope of y over x; 0 with fewer than two distinct x. */
export function slope(points: Array<[number, number]>): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** One agent's growth, judged on its last process (a restart resets memory, so growth
 * across processes means nothing) after that process's warm-up. */
export function summarizeAgent(
  name: string,
  samples: AgentSample[],
  retiredAt = Infinity,
): AgentSummary {
  const mine = samples.filter((s) => s.name === name && s.t_s <= retiredAt)
    .sort((a, b) => a.t_s - b.t_s);
  const pids = [...new Set(mine.map((s) => s.pid))];
  const last = mine.filter((s) => s.pid === pids.at(-1));
  const born = last[0]?.t_s ?? 0;
  const settled = last.filter((s) => s.t_s - born >= RSS_WARMUP_S);
  const judged = settled.length >= 2 ? settled : last;
  const first = judged[0];
  const end = judged.at(-1);
  if (!first || !end) {
    return {
      name,
      rss_start_mb: 0,
      rss_end_mb: 0,
      fds_start: 0,
      fds_end: 0,
      rss_slope_mb_per_h: 0,
      fds_slope_per_h: 0,
      lag_p99_ms: null,
      lag_max_ms: null,
      processes: pids.length,
      ok: false,
    };
  }
  const rssGrowth = end.rss_mb - first.rss_mb;
  const fdsGrowth = end.fds - first.fds;
  return {
    name,
    rss_start_mb: round1(first.rss_mb),
    rss_end_mb: round1(end.rss_mb),
    fds_start: first.fds,
    fds_end: end.fds,
    rss_slope_mb_per_h: round1(slope(judged.map((s) => [s.t_s / 3600, s.rss_mb]))),
    fds_slope_per_h: round1(slope(judged.map((s) => [s.t_s / 3600, s.fds]))),
    ...lagOf(mine),
    processes: pids.length,
    ok: rssGrowth < RSS_GROWTH_BOUND_MB && fdsGrowth < FDS_GROWTH_BOUND,
  };
}

/** Lag over every window an agent reported (a stall before a restart counts too). */
function lagOf(samples: AgentSample[]): { lag_p99_ms: number | null; lag_max_ms: number | null } {
  const p99s = samples.flatMap((s) => s.lag_p99_ms ?? []).sort((a, b) => a - b);
  const maxes = samples.flatMap((s) => s.lag_max_ms ?? []);
  if (p99s.length === 0) return { lag_p99_ms: null, lag_max_ms: null };
  return {
    lag_p99_ms: p99s[Math.min(p99s.length - 1, Math.floor(0.99 * p99s.length))],
    lag_max_ms: Math.max(...maxes),
  };
}

/** Mean and peak of the load samples, null without any. */
export function loadSummary(samples: LoadSample[]): Report["load"] {
  if (samples.length === 0) return null;
  const mean = samples.reduce((a, s) => a + s.load1, 0) / samples.length;
  return { mean: round1(mean), max: round1(Math.max(...samples.map((s) => s.load1))) };
}

export function judge(
  input: {
    started_at: string;
    shape: Report["shape"];
    faults: FaultOutcome[];
    requests: RequestRecord[];
    samples: AgentSample[];
    /** The machine's load average over the run. */
    load?: LoadSample[];
    /** Agents taken out of service by a fault (a revoked user's), from when: judged only
     * until then, and what they did afterwards is noted. */
    retired?: Record<string, number>;
    /** A step that stopped the run (setup failed, Ctrl-C): the verdict is then fail. */
    aborted?: string;
  },
): Report {
  const excuses = input.faults.flatMap((f) => f.excuses);
  const failed = input.requests.filter((r) => !r.ok);
  const unexcused = failed.filter((r) => !isExcused(r, excuses));
  const names = [...new Set(input.samples.map((s) => s.name))].sort();
  const retired = input.retired ?? {};
  const agents = names.map((n) => summarizeAgent(n, input.samples, retired[n]));
  const notes: string[] = [];
  for (const [name, at] of Object.entries(retired)) {
    const after = input.samples.filter((s) => s.name === name && s.t_s > at);
    if (after.length === 0) continue;
    const peak = after.reduce((a, s) => (s.fds > a.fds ? s : a));
    notes.push(
      `${name} out of service from ${at} s (not judged after): its descriptors peaked at ` +
        `${peak.fds} (${peak.t_s} s) and were ${after.at(-1)!.fds} at the end`,
    );
  }
  const reasons: string[] = [];
  if (input.aborted) reasons.push(`run stopped early: ${input.aborted}`);
  for (const f of input.faults.filter((f) => !f.ok)) {
    reasons.push(`fault ${f.kind} (${f.target}) at ${f.started_s} s: ${f.notes.join("; ")}`);
  }
  if (unexcused.length > 0) {
    reasons.push(`${unexcused.length} request(s) failed outside fault windows`);
  }
  for (const a of agents.filter((a) => !a.ok)) {
    reasons.push(
      `agent ${a.name}: RSS ${a.rss_start_mb} -> ${a.rss_end_mb} MB (bound +${RSS_GROWTH_BOUND_MB}), ` +
        `fds ${a.fds_start} -> ${a.fds_end} (bound +${FDS_GROWTH_BOUND})`,
    );
  }
  if (input.requests.filter((r) => r.ok).length === 0) reasons.push("no request succeeded");
  return {
    started_at: input.started_at,
    shape: input.shape,
    faults: input.faults,
    requests: {
      ok: input.requests.length - failed.length,
      failed: failed.length,
      excused: failed.length - unexcused.length,
      failed_outside_faults: unexcused.length,
    },
    unexcused_failures: unexcused.slice(0, LISTED_FAILURES),
    agents,
    load: loadSummary(input.load ?? []),
    verdict: reasons.length === 0 ? "pass" : "fail",
    reasons,
    notes,
  };
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

/** Checks a measured duration against its bound; the note says both. */
export function withinBound(
  what: string,
  from: number | null,
  to: number | null,
  bound: number,
): { ok: boolean; note: string } {
  if (from === null || to === null) return { ok: false, note: `${what}: not observed` };
  const d = Math.round((to - from) * 100) / 100;
  return { ok: d <= bound, note: `${what} after ${d} s (bound ${bound} s)` };
}

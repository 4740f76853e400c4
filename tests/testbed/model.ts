/**
 * What a testbed run records and reports: requests made by real clients, fault outcomes,
 * agent resource samples. Times are seconds since the run's traffic started (`t0`), so a
 * report reads the same whatever the wall clock was.
 */

/** One client request (curl, ssh, an idle connection's echo), as seen by the client. */
export interface RequestRecord {
  start_s: number;
  end_s: number;
  /** `user:alice`, `lan:printer`. */
  principal: string;
  service: string;
  /** The node hosting the service (faults excuse failures by node). */
  node: string;
  kind: "download" | "short" | "ssh" | "idle" | "lan" | "probe";
  ok: boolean;
  latency_ms: number;
  /** Why it failed: curl's exit code and stderr, a sha256 mismatch, a SOCKS reply. */
  error?: string;
}

/** Failures a fault is expected to cause: requests to `nodes` by `principals` (either may
 * be left out: any) that were under way in [from_s, to_s]. Everything else failing in the
 * window still counts. */
export interface Excuse {
  from_s: number;
  to_s: number;
  nodes?: string[];
  principals?: string[];
}

/** One fault as it happened. `detected_s` and `recovered_s` are run times (null: did not
 * happen, or the fault has no detection step); the bounds are durations. */
export interface FaultOutcome {
  kind: string;
  /** What it hit: a node, a site, a user. */
  target: string;
  started_s: number;
  detected_s: number | null;
  recovered_s: number | null;
  /** Detection must follow `started_s` within this (null: nothing to detect). */
  detect_bound_s: number | null;
  /** Recovery must follow `recover_from_s` (a restart, a heal, a deploy) within this. */
  bound_s: number;
  recover_from_s: number | null;
  ok: boolean;
  /** What was checked and measured, one line each, for the report. */
  notes: string[];
  excuses: Excuse[];
}

/** One reading of an agent process (from /proc). */
export interface AgentSample {
  name: string;
  pid: number;
  t_s: number;
  rss_mb: number;
  fds: number;
  /** The agent's event-loop lag in its last 5 s window (its metrics), when it answered. */
  lag_p99_ms?: number;
  lag_max_ms?: number;
}

/** The machine's 1-minute load average at a run time: a soak on a shared machine says how
 * shared it was. */
export interface LoadSample {
  t_s: number;
  load1: number;
}

export interface AgentSummary {
  name: string;
  rss_start_mb: number;
  rss_end_mb: number;
  fds_start: number;
  fds_end: number;
  /** Least-squares slope over the samples of the agent's last process, after warm-up. */
  rss_slope_mb_per_h: number;
  /** The same slope for open descriptors (per hour). */
  fds_slope_per_h: number;
  /** Over the agent's windows (all its processes): the 99th percentile of the windows'
   * p99 lag and the largest stall seen; null when its metrics never answered. */
  lag_p99_ms: number | null;
  lag_max_ms: number | null;
  /** Processes seen (a kill -9 and restart makes 2). */
  processes: number;
  ok: boolean;
}

export interface Report {
  started_at: string;
  shape: {
    nodes: number;
    users: number;
    services: number;
    minutes: number;
    wan: string;
  };
  faults: FaultOutcome[];
  requests: { ok: number; failed: number; excused: number; failed_outside_faults: number };
  /** Up to this many failures outside fault windows are listed, for diagnosis. */
  unexcused_failures: RequestRecord[];
  agents: AgentSummary[];
  /** The machine's 1-minute load average over the run (null: not sampled). */
  load: { mean: number; max: number } | null;
  verdict: "pass" | "fail";
  reasons: string[];
  /** What was seen but not judged (a revoked user's agent after its revocation). */
  notes: string[];
}

/**
 * How long this process was not running: a laptop that slept a moment, a descheduled VM, a
 * machine at load 30, a long GC pause. While the process is stopped nothing it waits for can
 * be heard (the answer sits in the socket buffer), so a deadline that counts those seconds
 * blames the peer for our own stall. The soak (docs/soak/soak-60min.md) had user agents stall
 * 1-4.2 s: their 1-1.6 s ping timeouts marked healthy nodes down and their 2.5 s connect
 * deadline refused requests whose handshake the node had completed.
 *
 * Pure: the shell (stall_watch.ts) looks at the clock every STALL_TICK_MS and on demand, and
 * feeds each reading here. A gap between two readings longer than the tick is time the
 * process did not run (a busy event loop included: quinn runs on the same thread, so the
 * answer could not be read either).
 */

/** How often the shell reads the clock: a stall shorter than this goes unseen, which a
 * deadline of a second can afford; 10 timers a second cost nothing measurable. */
export const STALL_TICK_MS = 100;

/** A stall at least this long is worth an `agent.stalled` event: the soak's user agents
 * logged a loop lag p99 of 0.35-1.3 s at load 25, so shorter ones would flood the log. */
export const STALL_LOG_MS = 1_000;

/** At most one `agent.stalled` event per this long (a loaded machine stalls in bursts); the
 * event counts the stalls it stands for. */
export const STALL_LOG_INTERVAL_MS = 10_000;

export interface StallClock {
  /** The last reading (performance.now() time). */
  last: number;
  /** Total time not running so far (ms). */
  stalledMs: number;
  /** Stalls of STALL_LOG_MS or more not yet logged, and the longest of them. */
  unlogged: number;
  unloggedMaxMs: number;
  /** When the last `agent.stalled` event was written. */
  loggedAt: number;
}

export interface StallReport {
  /** The longest stall since the last report (ms) and how many there were. */
  maxMs: number;
  count: number;
  /** Time not running since the clock started (ms). */
  totalMs: number;
}

export function startStallClock(now: number): StallClock {
  return { last: now, stalledMs: 0, unlogged: 0, unloggedMaxMs: 0, loggedAt: -Infinity };
}

/** The clock after a reading at `now`, and the event to log if one is due. */
export function readStallClock(
  c: StallClock,
  now: number,
): { clock: StallClock; stallMs: number; report?: StallReport } {
  const stallMs = Math.max(0, now - c.last - STALL_TICK_MS);
  let next: StallClock = { ...c, last: Math.max(c.last, now), stalledMs: c.stalledMs + stallMs };
  if (stallMs >= STALL_LOG_MS) {
    next = {
      ...next,
      unlogged: next.unlogged + 1,
      unloggedMaxMs: Math.max(next.unloggedMaxMs, stallMs),
    };
  }
  if (next.unlogged === 0 || now - next.loggedAt < STALL_LOG_INTERVAL_MS) {
    return { clock: next, stallMs };
  }
  const report = { maxMs: next.unloggedMaxMs, count: next.unlogged, totalMs: next.stalledMs };
  return { clock: { ...next, unlogged: 0, unloggedMaxMs: 0, loggedAt: now }, stallMs, report };
}

/** Of a wait that started at `startedAt` (with `stalledAtStart` on the clock), the time the
 * process was running, i.e. could have heard an answer. */
export function runningSince(
  c: StallClock,
  startedAt: number,
  stalledAtStart: number,
): number {
  return Math.max(0, c.last - startedAt - (c.stalledMs - stalledAtStart));
}

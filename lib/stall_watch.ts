/**
 * The process's stall clock (stall_clock.ts decides), read every STALL_TICK_MS and whenever a
 * deadline needs it, and deadlines that count only the time this process was running: a
 * connect deadline or a ping timeout that expires while we were not scheduled is extended by
 * the stall, so the answer waiting in the socket buffer is read before anyone is blamed.
 */
import {
  readStallClock,
  runningSince,
  STALL_TICK_MS,
  type StallClock,
  type StallReport,
  startStallClock,
} from "./stall_clock.ts";

let clock: StallClock | undefined;
const listeners = new Set<(r: StallReport) => void>();

/** The clock read now (started, with its tick, on first use). */
function read(): StallClock {
  const now = performance.now();
  if (!clock) {
    clock = startStallClock(now);
    // Unref'd: watching for stalls must never keep a process alive.
    Deno.unrefTimer(setInterval(read, STALL_TICK_MS));
    return clock;
  }
  const r = readStallClock(clock, now);
  clock = r.clock;
  if (r.report) { for (const l of listeners) l(r.report); }
  return clock;
}

/** Starts watching (the agent calls it at start so stalls are logged from then on) and calls
 * `listener` with each rate-limited report of a stall (stall_clock.ts). */
export function watchStalls(listener?: (r: StallReport) => void): void {
  if (listener) listeners.add(listener);
  read();
}

/** A mark to measure running time from (runningMsSince). */
export interface RunningMark {
  at: number;
  stalledMs: number;
}

export function runningMark(): RunningMark {
  const c = read();
  return { at: c.last, stalledMs: c.stalledMs };
}

/** Milliseconds this process ran since `mark`: wall time minus its stalls. */
export function runningMsSince(mark: RunningMark): number {
  return runningSince(read(), mark.at, mark.stalledMs);
}

/** A deadline armed by runningTimeout; `clear()` (or leaving a `using` block) disarms it. */
export interface RunningDeadline extends Disposable {
  signal: AbortSignal;
  clear(): void;
}

/** Like AbortSignal.timeout(ms), but only time this process was running counts: when the
 * timer fires after a stall, it waits again for the part of `ms` the stall took. The caller
 * clears it when the wait it guards ends (`using d = runningTimeout(ms)`): callers run it per
 * ping and per dial, and a timer left armed fires later only to build a reason nobody reads. */
export function runningTimeout(ms: number): RunningDeadline {
  const ac = new AbortController();
  const mark = runningMark();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = (wait: number) => {
    const t = setTimeout(() => {
      const left = ms - runningMsSince(mark);
      if (left > 0) arm(left);
      else {
        timer = undefined;
        ac.abort(new DOMException(`timed out after ${ms} ms`, "TimeoutError"));
      }
    }, wait);
    // Like AbortSignal.timeout: a deadline alone does not keep the process alive.
    Deno.unrefTimer(t);
    timer = t;
  };
  arm(ms);
  const clear = () => {
    clearTimeout(timer);
    timer = undefined;
  };
  return { signal: ac.signal, clear, [Symbol.dispose]: clear };
}

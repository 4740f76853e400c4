/**
 * When each fault starts: faults run one after another, spread evenly over the run after a
 * warm-up (traffic settles, every user has a connection to every node it uses) and before
 * a cool-down (the last recovery is followed by clean traffic). Pure: the plan is a
 * function of the fault list and the run's length; `runSchedule` drives it with a clock
 * given to it, so tests use a fake one.
 */

/** Traffic before the first fault: users' agents connect and the first samples settle. */
export const WARMUP_S = 15;
/** Clean traffic after the last fault window, so a slow recovery shows as failures. */
export const COOLDOWN_S = 10;

export interface PlannedFault<F> {
  fault: F;
  /** Seconds after traffic started. */
  at_s: number;
  /** How long the fault may occupy the run (inject, hold, recover, check). */
  window_s: number;
}

export class ScheduleError extends Error {}

/** Spreads faults with equal gaps; refuses a run too short to hold them, saying how long
 * it must be. */
export function planFaults<F>(
  faults: Array<{ fault: F; window_s: number }>,
  runSeconds: number,
): PlannedFault<F>[] {
  const busy = faults.reduce((a, f) => a + f.window_s, 0);
  const free = runSeconds - WARMUP_S - COOLDOWN_S - busy;
  if (free < 0) {
    const need = Math.ceil((WARMUP_S + COOLDOWN_S + busy) / 60);
    throw new ScheduleError(
      `testbed: ${faults.length} faults need ${
        WARMUP_S + COOLDOWN_S + busy
      } s (windows ${busy} s + warm-up ${WARMUP_S} s + cool-down ${COOLDOWN_S} s), the run ` +
        `has ${runSeconds} s: pass --minutes ${need} or more, or fewer faults (--faults)`,
    );
  }
  const gap = faults.length === 0 ? 0 : free / faults.length;
  const out: PlannedFault<F>[] = [];
  let t = WARMUP_S;
  for (const f of faults) {
    out.push({ fault: f.fault, at_s: Math.round(t * 10) / 10, window_s: f.window_s });
    t += f.window_s + gap;
  }
  return out;
}

/** Time for the runner: real (performance.now, setTimeout) or fake in tests. */
export interface Clock {
  /** Seconds since the run started. */
  now(): number;
  sleep(seconds: number): Promise<void>;
}

/**
 * Runs each fault at its time (or as soon as the previous one is done, when it overran: a
 * fault never starts while another is still running), then waits out the run. Stops
 * between faults once `stopped()` says so (Ctrl-C).
 */
export async function runSchedule<F, R>(
  plan: PlannedFault<F>[],
  runSeconds: number,
  clock: Clock,
  execute: (p: PlannedFault<F>, started_s: number) => Promise<R>,
  stopped: () => boolean = () => false,
): Promise<R[]> {
  const results: R[] = [];
  for (const p of plan) {
    const wait = p.at_s - clock.now();
    if (wait > 0) await clock.sleep(wait);
    if (stopped()) return results;
    results.push(await execute(p, clock.now()));
  }
  const rest = runSeconds - clock.now();
  if (rest > 0 && !stopped()) await clock.sleep(rest);
  return results;
}

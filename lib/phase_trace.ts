/**
 * Where the milliseconds of one tunnel's set-up go: named stamps taken as a connection passes
 * each phase (SOCKS greeting, gate, stream open, node's dial, first byte), reported as one
 * `trace.phases` event when the tunnel is carried. Off unless the agent runs with
 * `FLOR_TRACE_PHASES=1` (tests/bench/connect_phases.ts sets it); off, a trace is one shared
 * object whose calls do nothing, so the hot path pays a property load per phase.
 *
 * Pure: the clock is an input. The agents pass wall-clock milliseconds with sub-millisecond
 * precision (`performance.timeOrigin + performance.now()`), so the stamps of the user agent
 * and of the node agent on one machine line up on one time axis.
 */

export interface PhaseTrace {
  readonly enabled: boolean;
  /** Records `phase` as reached now; only the first stamp of a phase counts. */
  mark(phase: string): void;
  /** The stamps in the order they were taken: [phase, ms on the clock given]. */
  stamps(): ReadonlyArray<readonly [string, number]>;
}

/** The trace of every connection while tracing is off. */
export const NO_TRACE: PhaseTrace = {
  enabled: false,
  mark() {},
  stamps: () => [],
};

export function phaseTrace(now: () => number): PhaseTrace {
  const stamps: Array<readonly [string, number]> = [];
  const seen = new Set<string>();
  return {
    enabled: true,
    mark(phase) {
      if (seen.has(phase)) return;
      seen.add(phase);
      stamps.push([phase, now()]);
    },
    stamps: () => stamps,
  };
}

/** The event fields of a trace: the first stamp's time (`t0`, ms on the trace's clock) and
 * each phase's offset from it, ms, rounded to microseconds. */
export function traceFields(side: string, t: PhaseTrace): Record<string, unknown> {
  const s = t.stamps();
  const t0 = s[0]?.[1] ?? 0;
  const phases: Record<string, number> = {};
  for (const [phase, at] of s) phases[phase] = Math.round((at - t0) * 1000) / 1000;
  return { side, t0, phases };
}

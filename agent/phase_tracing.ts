/**
 * The agent's switch for lib/phase_trace.ts: `FLOR_TRACE_PHASES=1` in flor's environment
 * traces every tunnel's set-up (one `trace.phases` event per tunnel, for
 * tests/bench/connect_phases.ts); otherwise every trace is the shared no-op.
 */
import { NO_TRACE, type PhaseTrace, phaseTrace } from "../lib/phase_trace.ts";

function _enabled(): boolean {
  try {
    return Deno.env.get("FLOR_TRACE_PHASES") === "1";
  } catch {
    return false; // no --allow-env: tracing stays off
  }
}

const ON = _enabled();

/** Wall-clock ms with sub-ms precision: both agents' stamps on one axis. */
const wallNow = () => performance.timeOrigin + performance.now();

export function startTrace(): PhaseTrace {
  return ON ? phaseTrace(wallNow) : NO_TRACE;
}

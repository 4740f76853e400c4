/**
 * What the operator sees when this agent was not running for a while (lib/stall_clock.ts
 * measures it): `agent.stalled`, rate-limited, and `flor_stalls_total`. During a stall the
 * agent's deadlines (connect, ping, auth reply) are extended by it, so peers are not blamed
 * for it; a stall longer than QUIC's idle timeout still ends its connections.
 */
import type { EventLog } from "../lib/log.ts";
import { IDLE_TIMEOUT_MS } from "../lib/protocol.ts";
import { STALL_LOG_INTERVAL_MS, type StallReport } from "../lib/stall_clock.ts";
import type { AgentMetrics } from "./agent_metrics.ts";

export function stallReporter(log: EventLog, metrics: AgentMetrics) {
  return function reportStall(r: StallReport) {
    metrics.stalls.inc({}, r.count);
    log.warn("agent.stalled", {
      stalled_ms: Math.round(r.maxMs),
      stalls: r.count,
      total_stalled_ms: Math.round(r.totalMs),
      detail: `this agent did not run for ${Math.round(r.maxMs)} ms` +
        (r.count > 1 ? ` (${r.count} stalls within ${STALL_LOG_INTERVAL_MS / 1000} s)` : "") +
        `: the machine is overloaded (check its load average), was suspended, or the process ` +
        `paused; its deadlines waited for it, but a stall over ${IDLE_TIMEOUT_MS / 1000} s ` +
        `ends its QUIC connections`,
    });
  };
}

/**
 * An agent's event-loop lag from its /metrics text, ms: the p99 of
 * `flor_event_loop_lag_seconds{quantile="0.99"}` where the agent exports quantiles, else the
 * plain gauge (how late the last sampled timer fired). undefined when neither is there.
 */
export function eventLoopLagMs(metrics: string): number | undefined {
  const m = /^flor_event_loop_lag_seconds\{quantile="0\.99"\} (\S+)$/m.exec(metrics) ??
    /^flor_event_loop_lag_seconds (\S+)$/m.exec(metrics);
  if (!m) return undefined;
  const v = Number(m[1]) * 1000;
  return Number.isFinite(v) ? v : undefined;
}

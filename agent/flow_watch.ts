/**
 * Slow traffic flows: every few seconds, each tunnel's upstream (the TCP side read into the
 * QUIC stream) is looked at over the last window. A flow that had data waiting most of the
 * window (backpressure from the tunnel, so the network path is the limit, not the sender)
 * yet moved less than `limits.flow_mbytes_per_s_warn` raises `flow.slow` once, and
 * `flow.recovered` when it is back; a flow that is slow because its sender is idle is not.
 */
import type { EventLog } from "../lib/log.ts";
import type { TcpDuplex } from "../lib/relay.ts";
import type { Limits } from "./config.ts";

export const FLOW_WINDOW_MS = 5_000;
/** Share of the window spent waiting on the tunnel for the flow to count as network-bound. */
export const BLOCKED_SHARE = 0.5;

export interface FlowSample {
  bytes: number;
  sinkWaitMs: number;
  at: number;
}

/** Pure: the verdict for one window between two samples. */
export function assessFlow(prev: FlowSample, now: FlowSample, warnMBps: number) {
  const seconds = (now.at - prev.at) / 1000;
  if (seconds <= 0) return { slow: false, mbps: 0, blockedShare: 0 };
  const mbps = (now.bytes - prev.bytes) / seconds / 1e6;
  const blockedShare = Math.min(1, (now.sinkWaitMs - prev.sinkWaitMs) / (seconds * 1000));
  return { slow: blockedShare >= BLOCKED_SHARE && mbps < warnMBps, mbps, blockedShare };
}

interface Tracked {
  tcp: TcpDuplex;
  labels: Record<string, string>;
  last: FlowSample;
  slow: boolean;
}

export interface FlowWatch {
  /** Watches a tunnel's upstream until the returned function is called. */
  track(tcp: TcpDuplex, labels: Record<string, string>): () => void;
  stop(): void;
}

export function startFlowWatch(limits: () => Limits, log: EventLog): FlowWatch {
  const flows = new Set<Tracked>();
  const sample = (t: TcpDuplex): FlowSample => ({
    bytes: t.bytes.read,
    sinkWaitMs: t.sinkWaitMs(),
    at: performance.now(),
  });
  const timer = setInterval(() => {
    const warn = limits().flow_mbytes_per_s_warn;
    for (const f of flows) {
      const now = sample(f.tcp);
      const v = assessFlow(f.last, now, warn);
      f.last = now;
      const fields = {
        ...f.labels,
        mbytes_per_s: Math.round(v.mbps * 100) / 100,
        blocked_pct: Math.round(v.blockedShare * 100),
      };
      if (v.slow && !f.slow) log.warn("flow.slow", { ...fields, threshold: warn });
      if (!v.slow && f.slow && v.blockedShare < BLOCKED_SHARE) log.info("flow.recovered", fields);
      f.slow = v.slow;
    }
  }, FLOW_WINDOW_MS);
  Deno.unrefTimer(timer);
  return {
    track(tcp, labels) {
      const f: Tracked = { tcp, labels, last: sample(tcp), slow: false };
      flows.add(f);
      return () => flows.delete(f);
    },
    stop: () => clearInterval(timer),
  };
}

/**
 * Watches the agent's own resource use every few seconds: memory, CPU time, event-loop lag
 * and open file descriptors, exported as metrics and compared with the `*_warn` limits of
 * flor.yaml (`resource.high` once per crossing, `resource.normal` when back under 80%).
 */
import process from "node:process";
import type { EventLog } from "../lib/log.ts";
import type { AgentMetrics } from "./agent_metrics.ts";
import type { Limits } from "./config.ts";

export const SAMPLE_INTERVAL_MS = 5_000;

export interface ResourceSample {
  rss_bytes: number;
  heap_used_bytes: number;
  cpu_seconds: number;
  event_loop_lag_ms: number;
  open_fds?: number;
}

export interface ResourceMonitor {
  last(): ResourceSample;
  stop(): void;
}

/** Open descriptors where the OS shows them cheaply (Linux); undefined elsewhere. */
function openFds(): number | undefined {
  if (Deno.build.os !== "linux") return undefined;
  try {
    let n = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
    return n;
  } catch {
    return undefined;
  }
}

export function startResourceMonitor(
  limits: () => Limits,
  log: EventLog,
  metrics: AgentMetrics,
): ResourceMonitor {
  let lagMs = 0;
  const high = new Set<string>();
  const sample = (): ResourceSample => {
    const mem = Deno.memoryUsage();
    const cpu = process.cpuUsage();
    return {
      rss_bytes: mem.rss,
      heap_used_bytes: mem.heapUsed,
      cpu_seconds: (cpu.user + cpu.system) / 1e6,
      event_loop_lag_ms: lagMs,
      open_fds: openFds(),
    };
  };
  let last = sample();

  // Lag: how late a timer fires. A busy or blocked event loop delays every tunnel.
  let expected = performance.now() + SAMPLE_INTERVAL_MS;
  const tick = () => {
    const now = performance.now();
    lagMs = Math.max(0, now - expected);
    expected = now + SAMPLE_INTERVAL_MS;
    last = sample();
    metrics.loopLag.set({}, lagMs / 1000);
    if (last.open_fds !== undefined) metrics.openFds.set({}, last.open_fds);
    const l = limits();
    check("rss_mb", last.rss_bytes / 1048576, l.rss_mb_warn);
    check("event_loop_lag_ms", lagMs, l.event_loop_lag_ms_warn);
    if (last.open_fds !== undefined) check("open_fds", last.open_fds, l.open_fds_warn);
  };
  const check = (resource: string, value: number, threshold: number) => {
    if (!high.has(resource) && value > threshold) {
      high.add(resource);
      log.warn("resource.high", { resource, value: Math.round(value), threshold });
    } else if (high.has(resource) && value < threshold * 0.8) {
      high.delete(resource);
      log.info("resource.normal", { resource, value: Math.round(value), threshold });
    }
    metrics.resourceHigh.set({ resource }, high.has(resource) ? 1 : 0);
  };
  const timer = setInterval(tick, SAMPLE_INTERVAL_MS);
  Deno.unrefTimer(timer);
  return { last: () => last, stop: () => clearInterval(timer) };
}

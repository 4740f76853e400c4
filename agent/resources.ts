/**
 * Watches the agent's own resource use every few seconds: memory, CPU time, event-loop lag
 * and open file descriptors, exported as metrics and compared with the `*_warn` limits of
 * flor.yaml (`resource.high` once per crossing, `resource.normal` when back under 80%).
 */
import process from "node:process";
import type { EventLog } from "../lib/log.ts";
import type { AgentMetrics } from "./agent_metrics.ts";
import type { Limits } from "./config.ts";
import { udpReceiveErrors } from "./agent_metrics.ts";

export const SAMPLE_INTERVAL_MS = 5_000;
/** Event-loop lag is sampled this often (250 samples per window, enough for a p99); a timer
 * this cheap costs nothing measurable. */
export const LAG_SAMPLE_MS = 20;
/** Bound on lag samples kept for one window, should timers fire faster than planned. */
const MAX_LAG_SAMPLES = 2 * (SAMPLE_INTERVAL_MS / LAG_SAMPLE_MS);

/** Pure: median, p99 and max of one window's lag samples (ms). */
export function lagSummary(samples: readonly number[]): { p50: number; p99: number; max: number } {
  if (samples.length === 0) return { p50: 0, p99: 0, max: 0 };
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  return { p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1] };
}

export interface ResourceSample {
  rss_bytes: number;
  heap_used_bytes: number;
  cpu_seconds: number;
  event_loop_lag_ms: number;
  open_fds?: number;
  /** The host's UDP receive-buffer overflows (Linux): so far, and over the last minute. */
  udp_receive_errors?: number;
  udp_receive_errors_last_min?: number;
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
  let lagMs = 0; // p99 of the last window
  let lagSamples: number[] = [];
  /** RcvbufErrors at each of the last minute's samples, oldest first. */
  const overflows: number[] = [];
  const high = new Set<string>();
  const sample = (): ResourceSample => {
    const mem = Deno.memoryUsage();
    const cpu = process.cpuUsage();
    const udp = udpReceiveErrors();
    if (udp !== undefined) {
      overflows.push(udp);
      if (overflows.length > 60_000 / SAMPLE_INTERVAL_MS + 1) overflows.shift();
    }
    return {
      rss_bytes: mem.rss,
      heap_used_bytes: mem.heapUsed,
      cpu_seconds: (cpu.user + cpu.system) / 1e6,
      event_loop_lag_ms: lagMs,
      open_fds: openFds(),
      udp_receive_errors: udp,
      udp_receive_errors_last_min: udp === undefined ? undefined : udp - overflows[0],
    };
  };
  let last = sample();

  // Lag: how late a timer fires. A busy or blocked event loop delays every tunnel. Until the
  // first window closes the series read 0 (nothing measured late yet), so a scrape in the
  // agent's first seconds finds them, as it finds every other gauge.
  for (const quantile of ["0.5", "0.99", "1"]) metrics.loopLag.set({ quantile }, 0);
  let expected = performance.now() + LAG_SAMPLE_MS;
  let lagTimer: ReturnType<typeof setTimeout>;
  const probe = () => {
    const now = performance.now();
    if (lagSamples.length < MAX_LAG_SAMPLES) lagSamples.push(Math.max(0, now - expected));
    expected = now + LAG_SAMPLE_MS;
    lagTimer = setTimeout(probe, LAG_SAMPLE_MS);
    Deno.unrefTimer(lagTimer);
  };
  probe();
  const tick = () => {
    const lag = lagSummary(lagSamples);
    lagSamples = [];
    lagMs = lag.p99;
    last = sample();
    metrics.loopLag.set({ quantile: "0.5" }, lag.p50 / 1000);
    metrics.loopLag.set({ quantile: "0.99" }, lag.p99 / 1000);
    metrics.loopLag.set({ quantile: "1" }, lag.max / 1000);
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
  return {
    last: () => last,
    stop: () => {
      clearInterval(timer);
      clearTimeout(lagTimer);
    },
  };
}

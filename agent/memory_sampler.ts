/**
 * Where an agent's memory is, sampled from inside: `FLOR_MEMORY_SAMPLE=FILE` in flor's
 * environment appends one JSON line to FILE every SAMPLE_MS: the V8 heap, ArrayBuffer memory,
 * the relay buffer pool, glibc malloc's arenas and mmapped blocks, and the kernel's RSS split
 * (anonymous / file-backed). tests/bench/agent_memory.ts reads it to account for a phase's peak
 * component by component. Without the variable nothing is started: it costs nothing.
 */
import { getHeapStatistics } from "node:v8";
import { relayBuffers } from "../lib/buffer_pool.ts";
import { mallInfo, procStatus, statusBytes, trimStats } from "../lib/malloc.ts";
import { busyReadDirections } from "../lib/relay.ts";

/** Often enough to catch a burst's peak (200 × 1 MiB on loopback lasts ~1.5 s). */
export const SAMPLE_MS = 50;

function _file(): string | undefined {
  try {
    return Deno.env.get("FLOR_MEMORY_SAMPLE") || undefined;
  } catch {
    return undefined; // no --allow-env
  }
}

/** One sample: every figure in bytes. */
export function memorySample(): Record<string, number> {
  const u = Deno.memoryUsage();
  const h = getHeapStatistics();
  const m = mallInfo();
  const status = procStatus();
  return {
    t: Date.now(),
    rss: u.rss,
    rss_anon: statusBytes(status, "RssAnon") ?? 0,
    rss_file: statusBytes(status, "RssFile") ?? 0,
    heap_total: u.heapTotal,
    heap_used: u.heapUsed,
    external: u.external,
    v8_malloced: h.malloced_memory,
    pool_idle: relayBuffers.stats.idleBytes,
    pool_allocated: relayBuffers.stats.allocated,
    busy_directions: busyReadDirections(),
    malloc_arena: m ? m.arena : 0,
    malloc_mmapped: m ? m.hblkhd : 0,
    malloc_in_use: m ? m.uordblks : 0,
    malloc_free: m ? m.fordblks : 0,
    trims: trimStats.trims,
    trim_ms: trimStats.totalMs,
  };
}

/** Starts the sampler if FLOR_MEMORY_SAMPLE names a file; returns its stop. */
export function startMemorySampler(): () => void {
  const file = _file();
  if (!file) return () => {};
  const t = setInterval(() => {
    try {
      Deno.writeTextFileSync(file, JSON.stringify(memorySample()) + "\n", { append: true });
    } catch {
      // a sampler must never take the agent down
    }
  }, SAMPLE_MS);
  Deno.unrefTimer(t);
  return () => clearInterval(t);
}

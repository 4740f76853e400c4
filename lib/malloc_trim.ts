/**
 * When an agent asks glibc to give freed memory back to the kernel (lib/malloc.ts
 * `startMallocTrim`). Pure: malloc's figures in, a decision out.
 *
 * Why: glibc keeps what the agent frees in its arenas, resident, for reuse. After 200 × 1 MiB
 * at once each agent held 20-47 MB of free malloc memory (quinn's buffers, relay buffers the
 * pool freed, Deno's per-operation state) for as long as it ran (tests/bench/agent_memory.ts,
 * 2026-12-02: "free in it"); `malloc_trim(0)` returns the free pages in the middle of the
 * arenas too, which neither M_TRIM_THRESHOLD nor M_MMAP_THRESHOLD settings do.
 */

/** Trim once malloc's free bytes rose this far above their lowest since the last trim: that
 * much was in use and then freed, so it was touched and sits resident (free bytes a trim gave
 * back stay counted as free, untouched, until reused). One burst of 200 × 1 MiB frees 20-40
 * MB; an agent carrying steady traffic, whose free bytes move by a few MB, does not trim at
 * every check. Comparing with the lowest, not sampling the peak, also catches a burst shorter
 * than TRIM_CHECK_MS. */
export const TRIM_FREED_BYTES = 8 * 1024 * 1024;

/** How often the agent looks (one mallinfo2 call: a walk of malloc's bins). */
export const TRIM_CHECK_MS = 1_000;

export interface TrimState {
  /** Lowest free bytes seen since the last trim. */
  lowFree: number;
}

/** Pure: whether to trim now, given malloc's free bytes (mallinfo2 `fordblks`), and the state
 * for the next check. */
export function trimDecision(state: TrimState, free: number): { trim: boolean; next: TrimState } {
  const low = Math.min(state.lowFree, free);
  if (free - low >= TRIM_FREED_BYTES) return { trim: true, next: { lowFree: free } };
  return { trim: false, next: { lowFree: low } };
}

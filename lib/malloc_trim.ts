/**
 * When an agent asks glibc to give freed memory back to the kernel (lib/malloc.ts
 * `startMallocTrim`). Pure: the process's figures in, a decision out.
 *
 * Why: glibc keeps what the agent frees in its arenas, resident, for reuse. After 200 × 1 MiB
 * at once each agent held 20-47 MB of free malloc memory (quinn's buffers, relay buffers the
 * pool freed, Deno's per-operation state) for as long as it ran (tests/bench/agent_memory.ts,
 * 2026-12-02: "free in it"); `malloc_trim(0)` returns the free pages in the middle of the
 * arenas too, which neither M_TRIM_THRESHOLD nor M_MMAP_THRESHOLD settings do.
 *
 * Two signals, since the last trim: malloc's free bytes rose (a burst ended and freed what it
 * used), or resident anonymous memory (RssAnon) grew while malloc holds enough free memory to
 * give some back. Free bytes alone miss a burst shorter than a check that reused free memory
 * a trim had returned (counted as free, not resident): it touches it, frees it again, and free
 * bytes read the same before and after while the process is tens of MB larger. Resident
 * growth alone misses the end of a burst that was trimmed in its middle: the process stops
 * growing while what it frees stays resident.
 */

/** Trim once malloc's free bytes, or resident anonymous memory with at least this much free
 * in malloc, rose this far above their lowest since the last trim: one burst of 200 × 1 MiB
 * leaves 20-40 MB; an agent carrying steady traffic moves by a few MB and does not trim at
 * every check. Growth that is live data, not free memory, trims at most once per this much
 * growth. */
export const TRIM_GROWTH_BYTES = 8 * 1024 * 1024;

/** How often the agent looks (one mallinfo2 call, a walk of malloc's bins, and a read of
 * /proc/self/status). */
export const TRIM_CHECK_MS = 1_000;

export interface TrimState {
  /** Lowest readings since the last trim (or the start). */
  lowResident: number;
  lowFree: number;
}

export interface TrimReading {
  /** Resident anonymous bytes of the process (/proc/self/status RssAnon). */
  resident: number;
  /** Bytes free in malloc's arenas (mallinfo2 `fordblks`). */
  free: number;
}

/** Pure: whether to trim now, and the state for the next check. After a trim the caller
 * starts again from `afterTrim` with what it then reads. */
export function trimDecision(state: TrimState, r: TrimReading): { trim: boolean; next: TrimState } {
  const next = {
    lowResident: Math.min(state.lowResident, r.resident),
    lowFree: Math.min(state.lowFree, r.free),
  };
  const freed = r.free - next.lowFree >= TRIM_GROWTH_BYTES;
  const grown = r.resident - next.lowResident >= TRIM_GROWTH_BYTES &&
    r.free >= TRIM_GROWTH_BYTES;
  return freed || grown ? { trim: true, next: afterTrim(r) } : { trim: false, next };
}

/** The state after a trim: growth is measured from what the process kept. */
export function afterTrim(r: TrimReading): TrimState {
  return { lowResident: r.resident, lowFree: r.free };
}

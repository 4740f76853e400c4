/**
 * Prompt collection of closed QUIC connections.
 *
 * Measured on Deno 2.9.6: each accepted QUIC connection holds ~40-60 KB of native memory
 * that V8 does not count, so after the connection closes its JS wrapper (and the memory) is
 * freed only when the JS heap itself needs a collection, which a small heap rarely does: a
 * stream of short connections (a flood, reconnect storms) grew an agent by ~40 MB per
 * thousand, never returned. With `--v8-flags=--expose-gc` (set by every way flor is started:
 * deno tasks, release builds, test launchers) the agent asks for a collection shortly after
 * connections close; without the flag this does nothing.
 */

/** At most one forced collection per this interval (a full GC of a small heap is ~1-5 ms). */
export const GC_DEBOUNCE_MS = 2_000;

let scheduled = false;

export function collectClosedConnectionsSoon(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc || scheduled) return;
  scheduled = true;
  const t = setTimeout(() => {
    scheduled = false;
    gc();
  }, GC_DEBOUNCE_MS);
  Deno.unrefTimer(t);
}

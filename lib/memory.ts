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
 *
 * AGENT_V8_FLAGS are the V8 flags every way of starting flor and flor-gw passes.
 */

/**
 * - `--expose-gc`: for collectClosedConnectionsSoon below.
 * - `--max-semi-space-size=1` (MB): V8 grows its young generation up to three 16 MB
 *   semi-spaces under allocation pressure, and an agent's relays allocate a read buffer per
 *   chunk, so a busy agent kept ~50 MB of V8 heap for ~20 MB of live objects. Capped at 1 MB
 *   (tests/bench/agent_memory.ts, same run, load 10-14): V8 heap 29-32 → 21 MB idle and
 *   48-53 → 28-34 MB with 200 busy tunnels; RSS idle 93-100 → 84-88 MB, with 200 idle
 *   tunnels 115-117 → 96-103 MB. Smaller young collections run more often but each is
 *   cheaper; one-flow throughput on loopback is in docs/transport.md.
 */
export const AGENT_V8_FLAGS: readonly string[] = ["--expose-gc", "--max-semi-space-size=1"];

/** AGENT_V8_FLAGS as the one deno argument that carries them. */
export const AGENT_V8_FLAGS_ARG = `--v8-flags=${AGENT_V8_FLAGS.join(",")}`;

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

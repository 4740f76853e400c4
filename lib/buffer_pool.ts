/**
 * Read buffers the relays of one agent share and reuse.
 *
 * Why: a relay that reads into a fresh ArrayBuffer per chunk leaves every buffer it has sent to
 * V8, which frees an ArrayBuffer's memory only in a full collection, started on its own once
 * ~64 MB of such memory has piled up: 45-80 MB of dead buffers on a busy agent
 * (docs/transport.md "Memory"). A buffer given back here is handed out again to the next read
 * of that size, by any tunnel of the agent.
 *
 * The rule that makes sharing safe (a buffer one tunnel gave back carries its bytes into
 * another tunnel's read): a buffer is given back only once nothing reads it any more, that is
 * after the write that carried its bytes resolved. Deno 2.9.6's QUIC stream write resolves once
 * quinn copied the bytes into its send buffer (ext/net/quic.rs `SendStreamResource::write`:
 * `quinn::SendStream::write(&view)`), a TCP write once the kernel took them;
 * tests/lib/relay_test.ts checks both with a buffer overwritten right after its write. On any
 * error path the relay gives nothing back: the buffer may still be in an operation that was cut
 * short, and the garbage collector takes it.
 *
 * Sizes are powers of two (lib/relay.ts nextReadSize), one free list per size. What the free
 * lists keep is bounded by POOL_IDLE_MAX_BYTES: past it a given-back buffer is dropped (left to
 * the collector, as before), so a burst does not leave the agent holding its peak.
 *
 * Pure: no Deno.*, no clock.
 */

/** Bytes the free lists keep at most, per agent. Sized from tests/bench/agent_memory.ts
 * (200 × 1 MiB at once, 2026-12-02): the idle list rarely holds more than a few MiB, as each
 * tunnel takes a buffer right after it gives one back; what is held here is what an agent keeps
 * after a burst. */
export const POOL_IDLE_MAX_BYTES = 8 * 1024 * 1024;

export interface BufferPoolStats {
  /** Buffers handed out that came from a free list. */
  reused: number;
  /** Buffers handed out that were allocated. */
  allocated: number;
  /** Buffers given back that were dropped: the free lists were full. */
  dropped: number;
  /** Bytes in the free lists now. */
  idleBytes: number;
}

export class BufferPool {
  readonly #free = new Map<number, ArrayBuffer[]>();
  /** The buffers in the free lists: a second give of one would hand it to two reads. */
  readonly #idle = new Set<ArrayBuffer>();
  #idleBytes = 0;
  readonly stats: BufferPoolStats = { reused: 0, allocated: 0, dropped: 0, idleBytes: 0 };

  constructor(readonly idleMaxBytes: number = POOL_IDLE_MAX_BYTES) {}

  /** A buffer of exactly `size` bytes; its contents are whatever a previous read left. */
  take(size: number): Uint8Array {
    const list = this.#free.get(size);
    const reused = list?.pop();
    if (reused) {
      this.#idle.delete(reused);
      this.#idleBytes -= size;
      this.stats.idleBytes = this.#idleBytes;
      this.stats.reused++;
      return new Uint8Array(reused);
    }
    this.stats.allocated++;
    return new Uint8Array(size);
  }

  /** Gives back the whole buffer under `view` (any view of it: a read's subarray). Only once
   * nothing reads or writes it any more (see the module comment). */
  give(view: Uint8Array): void {
    const buf = view.buffer;
    // A detached buffer (a BYOB read that transferred it) has length 0: nothing to keep.
    if (!(buf instanceof ArrayBuffer) || buf.byteLength === 0) return;
    if (this.#idle.has(buf)) {
      // A relay bug, and a dangerous one: two tunnels would read into one buffer.
      throw new Error("buffer pool: a buffer was given back twice");
    }
    const size = buf.byteLength;
    if (this.#idleBytes + size > this.idleMaxBytes) {
      this.stats.dropped++;
      return;
    }
    let list = this.#free.get(size);
    if (!list) this.#free.set(size, list = []);
    list.push(buf);
    this.#idle.add(buf);
    this.#idleBytes += size;
    this.stats.idleBytes = this.#idleBytes;
  }

  /** Drops every idle buffer (to the collector). */
  clear(): void {
    this.#free.clear();
    this.#idle.clear();
    this.#idleBytes = 0;
    this.stats.idleBytes = 0;
  }
}

/** The agent's pool: one per process, shared by every relay (lib/relay.ts). */
export const relayBuffers = new BufferPool();

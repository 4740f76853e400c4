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
 * lists keep is bounded by POOL_IDLE_MAX_BYTES: past it the oldest buffers of the other sizes
 * are dropped, then the given-back one, so a burst does not leave the agent holding its peak.
 * A dropped buffer is freed at once (`transfer(0)` detaches it, and V8 releases its memory
 * then): left to the collector, dropped buffers piled up to 20-25 MB on the sending agent of
 * 200 × 1 MiB until a full collection (tests/bench/agent_memory.ts, 2026-12-02: ArrayBuffer
 * memory at the peak 27-48 → 23-33 MB). Only a buffer given back is dropped, and nothing reads
 * or writes it any more (the rule above), so nothing can see it detached.
 *
 * Pure: no Deno.*, no clock.
 */

/** Bytes the free lists keep at most, per agent (past it, buffers of other sizes are dropped
 * first, then the one given back): what an agent keeps after a burst, and what a burst holds
 * idle on top of its reads (the lists stayed full, 6-8 MiB, through 200 × 1 MiB at once). Since
 * a dropped buffer is freed at once, a smaller pool costs only allocations: 2 MiB against 8
 * (tests/bench/agent_memory.ts and `deno task bench --links loopback`, 3 runs each interleaved,
 * 2026-12-02 16:29 UTC, load 0.6-1): user agent peak 135-142 against 140-156 MB, 200 × 1 MiB
 * 1.15-1.29 against 1.21-1.25 s, one flow 385-416 against 388-399 MB/s. */
export const POOL_IDLE_MAX_BYTES = 2 * 1024 * 1024;

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

  /** A view of `size` bytes, of an idle buffer of that size, else of a new one; its contents are
   * whatever a previous read left. Never of a larger idle buffer: lib/relay.ts's read budget
   * counts the sizes asked for, and larger buffers lent to smaller reads (up to 4× before)
   * made the sending agent's reads pin 26-34 MB under a 16 MiB budget. */
  take(size: number): Uint8Array {
    const reused = this.#free.get(size)?.pop();
    if (!reused) {
      this.stats.allocated++;
      return new Uint8Array(size);
    }
    this.#idle.delete(reused);
    this.#idleBytes -= size;
    this.stats.idleBytes = this.#idleBytes;
    this.stats.reused++;
    return new Uint8Array(reused);
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
    if (size > this.idleMaxBytes) {
      this.#drop(buf);
      return;
    }
    // Over the budget, older buffers of other sizes make room: what was given back last is
    // what the reads want next (a flow's read size settles; the sizes a burst grew through
    // would otherwise fill the lists and make every later buffer a drop).
    while (this.#idleBytes + size > this.idleMaxBytes) {
      if (!this.#evictOther(size)) {
        this.#drop(buf);
        return;
      }
    }
    let list = this.#free.get(size);
    if (!list) this.#free.set(size, list = []);
    list.push(buf);
    this.#idle.add(buf);
    this.#idleBytes += size;
    this.stats.idleBytes = this.#idleBytes;
  }

  /** Drops one idle buffer of the size with the most idle bytes other than `keep`; false if
   * there is none. */
  #evictOther(keep: number): boolean {
    let victim: number | undefined;
    let most = 0;
    for (const [size, list] of this.#free) {
      if (size !== keep && list.length * size > most) [victim, most] = [size, list.length * size];
    }
    if (victim === undefined) return false;
    const buf = this.#free.get(victim)!.shift()!;
    this.#idle.delete(buf);
    this.#idleBytes -= victim;
    this.stats.idleBytes = this.#idleBytes;
    this.#drop(buf);
    return true;
  }

  /** Frees a buffer nothing uses any more (see the module comment). */
  #drop(buf: ArrayBuffer): void {
    this.stats.dropped++;
    buf.transfer(0);
  }

  /** Drops every idle buffer. */
  clear(): void {
    for (const buf of this.#idle) buf.transfer(0);
    this.#free.clear();
    this.#idle.clear();
    this.#idleBytes = 0;
    this.stats.idleBytes = 0;
  }
}

/** The agent's pool: one per process, shared by every relay (lib/relay.ts). */
export const relayBuffers = new BufferPool();

/**
 * Reads whole messages off a byte stream for the sans-I/O parsers.
 *
 * Parsers (socks5.ts, frames from binary.ts) say how many bytes they need; this keeps
 * reading until they have them, never holding more than the caller's bound, and hands back
 * whatever arrived beyond the last message so a relay can forward it untouched.
 */

export type Parsed<T> = { done: true; value: T; size: number } | { done: false; need: number };

export class StreamClosedError extends Error {
  override name = "StreamClosedError";
}

/** Bytes from something that is not a ReadableStream (a TCP socket read directly). */
export interface ChunkSource {
  /** The next bytes, or null at the end. */
  read(): Promise<Uint8Array | null>;
  cancel(): void;
}

interface Reader {
  /** The next bytes (at most `size` where the source lets us choose). */
  read(size: number): Promise<ReadableStreamReadResult<Uint8Array>>;
  releaseLock(): void;
  cancel(): Promise<void>;
}

function sourceReader(s: ChunkSource): Reader {
  return {
    read: async () => {
      const value = await s.read();
      return value === null ? { done: true, value: undefined } : { done: false, value };
    },
    releaseLock() {},
    cancel: () => Promise.resolve(s.cancel()),
  };
}

/**
 * Smallest read of a byte stream: a florete/1 header or reply (≤ 260 bytes) arrives whole,
 * and the bytes behind it stay in the stream for the relay. A default reader on Deno's QUIC
 * stream allocates 64 KiB per read, i.e. per tunnel on each side, for a header of a few dozen
 * bytes, and the collector frees those late: 200 tunnels opened at once left ~13 MB of them
 * per agent (tests/bench/agent_memory.ts, 2026-12-02). Reads of a larger message (auth) are
 * sized to what it still needs.
 */
export const HEADER_READ_BYTES = 1024;

/** A BYOB reader of `s` if it is a byte stream (Deno's QUIC streams are), else undefined
 * (and `s` stays unlocked). */
export function byobReaderOf(
  s: ReadableStream<Uint8Array>,
): ReadableStreamBYOBReader | undefined {
  try {
    return s.getReader({ mode: "byob" });
  } catch {
    return undefined; // not a byte stream
  }
}

/** A byte stream is read with a BYOB reader into buffers of our size, which can be handed on
 * to the relay (handOver); any other with a default reader. */
function streamReader(s: ReadableStream<Uint8Array>): Reader & { byob?: ReadableStreamBYOBReader } {
  const byob = byobReaderOf(s);
  if (byob) {
    const r = byob;
    return {
      byob: r,
      read: (size) => r.read(new Uint8Array(size)),
      releaseLock: () => r.releaseLock(),
      cancel: () => r.cancel(),
    };
  }
  const r = s.getReader();
  return { read: () => r.read(), releaseLock: () => r.releaseLock(), cancel: () => r.cancel() };
}

export class StreamBuffer {
  #reader: Reader & { byob?: ReadableStreamBYOBReader };
  #buf: Uint8Array = new Uint8Array(0);

  constructor(source: ReadableStream<Uint8Array> | ChunkSource) {
    this.#reader = source instanceof ReadableStream ? streamReader(source) : sourceReader(source);
  }

  /** Reads one message; throws RangeError when it would exceed `max` bytes, StreamClosedError
   * when the peer ends the stream first, and whatever `parse` throws for malformed bytes. */
  async read<T>(parse: (b: Uint8Array) => Parsed<T>, max: number): Promise<T> {
    for (;;) {
      const r = parse(this.#buf);
      if (r.done && r.size > max) {
        throw new RangeError(`message of ${r.size} bytes exceeds the limit of ${max}`);
      }
      if (r.done) {
        this.#buf = this.#buf.subarray(r.size);
        return r.value;
      }
      if (r.need > max) throw new RangeError(`message needs ${r.need} bytes, limit is ${max}`);
      const { value, done } = await this.#reader.read(
        Math.max(HEADER_READ_BYTES, r.need - this.#buf.length),
      );
      if (done || !value) throw new StreamClosedError("stream ended in the middle of a message");
      this.#buf = this.#buf.length === 0 ? value : concat(this.#buf, value);
    }
  }

  /** One u16-length-prefixed frame body (binary.ts). */
  readFrame(max: number): Promise<Uint8Array> {
    return this.read(parseFrame, max + 2);
  }

  /** Gives the stream back (unlocked) with the bytes already read past the last message, as a
   * copy: a view would keep the whole chunk it arrived in alive as long as the relay that
   * holds it, i.e. the tunnel (Deno reads a QUIC stream in 64 KiB chunks; 200 held tunnels
   * pinned ~13 MB per agent that way, tests/bench/agent_memory.ts). */
  release(): Uint8Array {
    this.#reader.releaseLock();
    return this.#rest();
  }

  /**
   * Like release(), but a byte stream's reader stays locked and is handed on (`reader`) for
   * the relay to read with: releasing a lock rejects the lock's `closed` promise with a new
   * TypeError, stack trace and all, which nobody reads (~2-4% of an agent's busy time per
   * CONNECT with the writer's, tests/bench/connect_phases.ts --profile). Any other stream is
   * released as by release().
   */
  handOver(): { rest: Uint8Array; reader?: ReadableStreamBYOBReader } {
    const reader = this.#reader.byob;
    if (!reader) this.#reader.releaseLock();
    return { rest: this.#rest(), reader };
  }

  #rest(): Uint8Array {
    const rest = this.#buf.slice();
    this.#buf = new Uint8Array(0);
    return rest;
  }

  /** Cancels the underlying stream (the peer gets a reset / the socket is dropped). */
  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}

export function parseFrame(b: Uint8Array): Parsed<Uint8Array> {
  if (b.length < 2) return { done: false, need: 2 };
  const len = (b[0] << 8) | b[1];
  if (b.length < 2 + len) return { done: false, need: 2 + len };
  return { done: true, value: b.slice(2, 2 + len), size: 2 + len };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

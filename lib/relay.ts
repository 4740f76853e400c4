/**
 * Carries one tunnelled TCP connection over one QUIC stream, both ways.
 *
 * Half-close is carried through: EOF from the TCP side becomes a QUIC FIN and a FIN becomes
 * a TCP write shutdown, so request/response protocols that signal "done" with EOF work.
 * Backpressure: each direction reads its next chunk only once the other side took the last
 * (TCP → stream) or while one write is in flight (stream → TCP), so a slow reader stops
 * reads on the other side, and QUIC flow control stops the remote writer: memory per tunnel
 * is a few chunks.
 *
 * A relay that ends in error (the tunnel was cut, the peer reset its stream, an abort) resets
 * the TCP connection instead of closing it: the TCP peer reads "connection reset", not an EOF
 * that would make a cut-off download look complete (lib/socket_options.ts; Linux only, where
 * that is not possible the connection is closed with a FIN and `resetError` says why).
 */
import { relayBuffers } from "./buffer_pool.ts";
import { byobReaderOf } from "./stream_buffer.ts";
import { resetConnection } from "./socket_options.ts";

export interface Duplex {
  readable: ReadableStream<Uint8Array>;
  /** Must be done with a chunk once its write resolved (Deno's QUIC streams are): the relay
   * reuses the chunk's buffer for a later read (lib/buffer_pool.ts). */
  writable: WritableStream<Uint8Array>;
  /** Locks the set-up already holds on `readable` and `writable` (it read the header and
   * wrote the reply through them): the relay uses them instead of taking new ones, as
   * releasing a lock builds a TypeError (lib/stream_buffer.ts handOver). */
  reader?: ReadableStreamBYOBReader;
  writer?: WritableStreamDefaultWriter<Uint8Array>;
}

export interface RelayResult {
  /** Bytes from the TCP side into the stream. */
  sent: number;
  /** Bytes from the stream to the TCP side. */
  received: number;
  /** First error that ended the relay early, if any. */
  error?: unknown;
  /** Whether the TCP connection was reset (it is, when the relay ended in error). */
  reset: boolean;
  /** Why a reset that was due could not be sent (non-Linux, socket gone): for logs. */
  resetError?: string;
}

/** A TCP connection as the relay drives it: sized reads and whole writes straight on the
 * socket (no stream objects: each stream stage per chunk cost measurable CPU per tunnel and
 * per byte), with the counts the flow watch and the metrics read. */
export interface TcpDuplex {
  conn: Deno.TcpConn;
  /** The next bytes from the socket (read size from nextReadSize), or null at EOF or once
   * the socket is closed. */
  read(): Promise<Uint8Array | null>;
  /** Gives a chunk read() returned back for the next reads (lib/buffer_pool.ts), once the
   * write that carried it resolved: not before, and not after a failed write. */
  release(chunk: Uint8Array): void;
  /** Closes the socket (if still open) and ends its share of the agent's read budget. */
  close(): void;
  /** Writes all of `chunk`. */
  write(chunk: Uint8Array): Promise<void>;
  /** Bytes read from / written to the socket so far. */
  bytes: { read: number; written: number };
  /** Milliseconds the read side has spent with data in hand waiting for the other side to
   * take it (backpressure from the tunnel), including a wait still going on: high while the
   * network is the bottleneck. */
  sinkWaitMs(): number;
  /** Set by the relay to report traffic as it moves (metrics). */
  onBytes?: (direction: "read" | "written", n: number) => void;
}

/** Largest single read, from a TCP socket or a QUIC stream. Measured: 256 KiB writes into a
 * QUIC stream beat 64 KiB ones, and 256 KiB reads from a QUIC stream on loopback took half as
 * many reads as Deno's own 64 KiB (avg 99 KB vs 48 KB per read). */
export const READ_MAX_BYTES = 256 * 1024;

/** First read, and what an idle tunnel keeps: each direction always has one read pending, with
 * its buffer. Held tunnels per agent (tests/bench/agent_memory.ts): 2,000 cost 253-257 MB RSS
 * with 16 KiB reads, 176-182 MB with 4 KiB; a read that fills its buffer doubles the next one,
 * so a bulk flow is at READ_MAX_BYTES after six reads. */
export const READ_MIN_BYTES = 4 * 1024;

/** What the reads of all busy relay directions of an agent may hold at once: the largest read
 * shrinks as more directions are busy (readCeiling). Measured (tests/bench/agent_memory.ts,
 * 200 × 1 MiB at once, with pooled buffers): reads of up to 256 KiB peaked the sending agent
 * at 178 MB, of up to 64 KiB (this budget) at 149 MB. 8 MiB (32 KiB reads for 200 flows) was
 * tried with buffers freed on drop (lib/buffer_pool.ts): `deno task bench --links loopback`,
 * quiet machine, 3 runs each interleaved, 2026-12-02 16:23 UTC: user agent peak 133-134 against
 * 140-141 MB, but 200 × 1 MiB in 1.45-1.57 s against 1.25-1.41 s; 5% less memory for 15-20%
 * more time was not worth it. One flow keeps 256 KiB reads, which it needs for its speed. */
export const READ_BUDGET_BYTES = 16 * 1024 * 1024;

/** Pure: the largest read each of `busy` directions may make within `budget`: a power of two
 * between READ_MIN_BYTES and READ_MAX_BYTES. */
export function readCeiling(busy: number, budget: number = READ_BUDGET_BYTES): number {
  const share = budget / Math.max(1, busy);
  let ceiling = READ_MIN_BYTES;
  while (ceiling * 2 <= Math.min(share, READ_MAX_BYTES)) ceiling *= 2;
  return ceiling;
}

/** Pure: the next read size after a read of `got` bytes into `size`: twice as large when the
 * read filled it (more was waiting), half when it was at most a quarter full (the flow went
 * quiet, so an idle tunnel drifts back to a small buffer); never above `ceiling`. */
export function nextReadSize(size: number, got: number, ceiling = READ_MAX_BYTES): number {
  let next = size;
  if (got >= size) next = size * 2;
  else if (got <= size / 4) next = size / 2;
  return Math.max(READ_MIN_BYTES, Math.min(next, ceiling, READ_MAX_BYTES));
}

/** Directions of this agent's relays that read more than READ_MIN_BYTES at a time (moving
 * bulk data): what readCeiling divides the budget by. */
let busyDirections = 0;

/** The read size of one relay direction, counted in busyDirections while above the minimum.
 * end() (idempotent) takes it out: every pump calls it when it finishes, however it ends. */
class ReadSizer {
  size = READ_MIN_BYTES;
  update(got: number): void {
    const wasBusy = this.size > READ_MIN_BYTES;
    this.size = nextReadSize(this.size, got, readCeiling(busyDirections + (wasBusy ? 0 : 1)));
    busyDirections += Number(this.size > READ_MIN_BYTES) - Number(wasBusy);
  }
  end(): void {
    if (this.size > READ_MIN_BYTES) busyDirections--;
    this.size = READ_MIN_BYTES;
  }
}

/** For tests: the busy directions now (0 once every relay ended). */
export function busyReadDirections(): number {
  return busyDirections;
}

/**
 * The relay's view of a TCP connection. Half-close is the caller's: EOF from read() leaves the
 * write side open, and the relay shuts the write side down with conn.closeWrite() (Deno's own
 * conn.readable/writable would close the whole socket at EOF and cut the other direction).
 */
export function tcpDuplex(conn: Deno.TcpConn): TcpDuplex {
  const sizer = new ReadSizer();
  let handedOver = 0; // when the last chunk was handed over (0: none waiting)
  let waited = 0;
  const duplex: TcpDuplex = {
    conn,
    bytes: { read: 0, written: 0 },
    sinkWaitMs: () => waited + (handedOver ? performance.now() - handedOver : 0),
    async read() {
      // The relay asks for the next chunk once the last one was taken: the time since the
      // hand-over is time spent waiting for the other side.
      if (handedOver) waited += performance.now() - handedOver;
      handedOver = 0;
      // A pooled buffer is handed over whole (no copy) and comes back through release() once
      // written; the pending read of an idle tunnel holds only a small one.
      const buf = relayBuffers.take(sizer.size);
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch (e) {
        if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) {
          return null;
        }
        throw e;
      }
      if (n === null) {
        relayBuffers.give(buf);
        sizer.end();
        return null;
      }
      sizer.update(n);
      duplex.bytes.read += n;
      duplex.onBytes?.("read", n);
      handedOver = performance.now();
      return buf.subarray(0, n);
    },
    release: (chunk) => relayBuffers.give(chunk),
    close() {
      sizer.end();
      closeQuietly(conn);
    },
    async write(chunk) {
      for (let off = 0; off < chunk.length;) off += await conn.write(chunk.subarray(off));
      duplex.bytes.written += chunk.length;
      duplex.onBytes?.("written", chunk.length);
    },
  };
  return duplex;
}

export interface RelayOptions {
  /** Bytes already read from the TCP side (after a SOCKS request) to send first. */
  tcpLeftover?: Uint8Array;
  /** Bytes already read from the stream (after a tunnel reply) to deliver first. */
  streamLeftover?: Uint8Array;
  /** Aborting ends the relay at once (a revoked peer, shutdown). */
  signal?: AbortSignal;
  /** Called with byte counts as data moves, for metrics: sent = TCP → stream. */
  onBytes?: (direction: "sent" | "received", n: number) => void;
}

export async function relay(tcp: TcpDuplex, stream: Duplex, o: RelayOptions = {}) {
  const start = { ...tcp.bytes };
  const stop = new AbortController();
  let error: unknown;
  let reset = false;
  let resetError: string | undefined;
  const fail = (e: unknown) => {
    if (error === undefined) {
      error = e;
      // Before anything closes the socket: a reset after close would find no socket.
      try {
        resetConnection(tcp.conn);
        reset = true;
      } catch (err) {
        resetError = (err as Error).message;
      }
    }
    stop.abort(e);
  };
  const onAbort = () => fail(o.signal?.reason ?? new Error("relay aborted"));
  o.signal?.addEventListener("abort", onAbort, { once: true });
  if (o.onBytes) {
    const report = o.onBytes;
    tcp.onBytes = (dir, n) => report(dir === "read" ? "sent" : "received", n);
  }
  if (o.tcpLeftover?.length) o.onBytes?.("sent", o.tcpLeftover.length);
  // Neither pump closes the TCP socket itself on an error: fail() resets it first, the end
  // below closes it.
  await Promise.all([
    pumpToStream(tcp, o.tcpLeftover, stream.writer ?? stream.writable, stop).catch(fail),
    pumpToTcp(stream.reader ?? stream.readable, o.streamLeftover, tcp, stop).catch(fail),
  ]);
  o.signal?.removeEventListener("abort", onAbort);
  tcp.onBytes = undefined;
  tcp.close();
  const result: RelayResult = {
    sent: tcp.bytes.read - start.read + (o.tcpLeftover?.length ?? 0),
    received: tcp.bytes.written - start.written,
    reset,
  };
  if (error !== undefined) result.error = error;
  if (resetError !== undefined) result.resetError = resetError;
  return result;
}

/**
 * The send path, TCP → stream, with the semantics pipeTo had here: EOF closes the stream (a
 * FIN); a read error aborts it (a reset) and ends the relay; a write error ends the relay; an
 * abort (signalled by relay() after its reset) aborts the stream and closes the socket, which
 * ends a read pending on an idle connection. One read at a time: the next starts once the
 * stream took the last chunk, so a blocked tunnel stops the TCP reads (backpressure, and
 * sinkWaitMs). No Promise.race against the abort: a never-settling promise raced once per
 * chunk keeps every chunk reachable (measured: +600 MB on a 1 GiB flow).
 */
async function pumpToStream(
  tcp: TcpDuplex,
  leftover: Uint8Array | undefined,
  to: WritableStream<Uint8Array> | WritableStreamDefaultWriter<Uint8Array>,
  stop: AbortController,
): Promise<void> {
  if (stop.signal.aborted) throw stop.signal.reason;
  const writer = to instanceof WritableStream ? to.getWriter() : to;
  const onAbort = () => {
    writer.abort(stop.signal.reason).catch(() => {});
    closeQuietly(tcp.conn);
  };
  stop.signal.addEventListener("abort", onAbort, { once: true });
  try {
    if (leftover?.length) await writer.write(leftover);
    for (;;) {
      let chunk: Uint8Array | null;
      try {
        chunk = await tcp.read();
      } catch (e) {
        if (!stop.signal.aborted) writer.abort(e).catch(() => {});
        throw e;
      }
      if (stop.signal.aborted) throw stop.signal.reason;
      if (chunk === null) break;
      await writer.write(chunk);
      // Deno's QUIC write resolves once quinn copied the bytes (lib/buffer_pool.ts).
      tcp.release(chunk);
    }
    await writer.close();
  } catch (e) {
    if (stop.signal.aborted) throw stop.signal.reason;
    throw e;
  } finally {
    stop.signal.removeEventListener("abort", onAbort);
  }
}

/**
 * The receive path, stream → TCP, with pipeTo's semantics (EOF becomes a write shutdown; an
 * error cancels the source and leaves the socket to relay(), which resets it first; an abort,
 * which relay() signals only after that reset, also aborts the sink) and fewer
 * operations per byte: each read takes everything the QUIC stream has buffered, up to
 * READ_MAX_BYTES (a BYOB read sized by nextReadSize), so frames that piled up while the agent
 * was busy go out in one TCP write; and the next read is started before the write is awaited.
 * No read waits on purpose for more: that would delay every interactive reply (measured
 * chunks on a paced 100 Mbit/s stream: ~4.4 KB, docs/transport.md).
 */
async function pumpToTcp(
  from: ReadableStream<Uint8Array> | ReadableStreamBYOBReader,
  leftover: Uint8Array | undefined,
  tcp: TcpDuplex,
  stop: AbortController,
): Promise<void> {
  if (stop.signal.aborted) throw stop.signal.reason;
  const reader = sizedReader(from);
  const sizer = new ReadSizer();
  // An abort may come while a write is blocked on a TCP peer that stopped reading: closing
  // the socket is what ends that write.
  const onAbort = () => {
    reader.cancel(stop.signal.reason).catch(() => {});
    closeQuietly(tcp.conn);
  };
  stop.signal.addEventListener("abort", onAbort, { once: true });
  try {
    if (leftover?.length) await tcp.write(leftover);
    let next = reader.read(sizer.size);
    for (;;) {
      const r = await next;
      if (stop.signal.aborted) throw stop.signal.reason;
      if (r.done) {
        if (r.value) reader.release(r.value);
        break;
      }
      sizer.update(r.value.length);
      next = reader.read(sizer.size);
      next.catch(() => {}); // awaited on the next turn; a failure must not go unhandled first
      await tcp.write(r.value);
      reader.release(r.value);
    }
    await tcp.conn.closeWrite().catch(() => {});
  } catch (e) {
    if (stop.signal.aborted) throw stop.signal.reason;
    // Our own failure: the source is cancelled here, the TCP socket is left to relay(),
    // which ends the other direction and closes it (no write is in flight at this point).
    reader.cancel(e).catch(() => {});
    throw e;
  } finally {
    sizer.end();
    stop.signal.removeEventListener("abort", onAbort);
  }
}

interface SizedReader {
  read(size: number): Promise<ReadableStreamReadResult<Uint8Array>>;
  /** Gives a read's buffer back to the pool once written, if it came from there. */
  release(chunk: Uint8Array): void;
  cancel(reason: unknown): Promise<void>;
}

/** Reads of a chosen size from a byte stream (Deno's QUIC streams are) into pooled buffers
 * (a BYOB read hands the buffer back, transferred, with the bytes in it), or whatever chunks a
 * plain stream yields (not ours: never pooled). */
function sizedReader(s: ReadableStream<Uint8Array> | ReadableStreamBYOBReader): SizedReader {
  if (!(s instanceof ReadableStream)) return byobSizedReader(s);
  const byob = byobReaderOf(s);
  if (byob) return byobSizedReader(byob);
  const r = s.getReader();
  return { read: () => r.read(), release: () => {}, cancel: (reason) => r.cancel(reason) };
}

function byobSizedReader(r: ReadableStreamBYOBReader): SizedReader {
  return {
    read: (size) => r.read(relayBuffers.take(size)),
    release: (chunk) => relayBuffers.give(chunk),
    cancel: (reason) => r.cancel(reason),
  };
}

export function closeQuietly(c: { close(): void }): void {
  try {
    c.close();
  } catch {
    // already closed
  }
}

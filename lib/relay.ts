/**
 * Carries one tunnelled TCP connection over one QUIC stream, both ways.
 *
 * Half-close is carried through: EOF from the TCP side becomes a QUIC FIN and a FIN becomes
 * a TCP write shutdown, so request/response protocols that signal "done" with EOF work.
 * Backpressure is pipeTo's: a slow reader stops reads on the other side, and QUIC flow
 * control stops the remote writer, so memory per tunnel is a few chunks.
 */

export interface Duplex {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
}

export interface RelayResult {
  /** Bytes from the TCP side into the stream. */
  sent: number;
  /** Bytes from the stream to the TCP side. */
  received: number;
  /** First error that ended the relay early, if any. */
  error?: unknown;
}

export interface TcpDuplex extends Duplex {
  conn: Deno.TcpConn;
}

/** Largest single read from a TCP socket. Measured: 256 KiB writes into a QUIC stream beat
 * 64 KiB ones; each read is copied out so the buffer is reused and memory stays bounded. */
export const TCP_READ_BYTES = 256 * 1024;

/**
 * Streams over a TCP connection that keep the two directions independent. Deno's own
 * conn.readable closes the whole socket at EOF and conn.writable's close() does too, which
 * would cut the other direction of a half-closed connection.
 */
export function tcpDuplex(conn: Deno.TcpConn): TcpDuplex {
  const buf = new Uint8Array(TCP_READ_BYTES);
  const readable = new ReadableStream<Uint8Array>({
    async pull(ctl) {
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch (e) {
        if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) n = null;
        else throw e;
      }
      if (n === null) ctl.close();
      else ctl.enqueue(buf.slice(0, n));
    },
    cancel() {
      closeQuietly(conn);
    },
  }, { highWaterMark: 0 });
  const writable = new WritableStream<Uint8Array>({
    async write(chunk) {
      for (let off = 0; off < chunk.length;) off += await conn.write(chunk.subarray(off));
    },
    async close() {
      await conn.closeWrite().catch(() => {});
    },
    abort() {
      closeQuietly(conn);
    },
  });
  return { conn, readable, writable };
}

export interface RelayOptions {
  /** Bytes already read from the TCP side (after a SOCKS request) to send first. */
  tcpLeftover?: Uint8Array;
  /** Bytes already read from the stream (after a tunnel reply) to deliver first. */
  streamLeftover?: Uint8Array;
  /** Aborting ends the relay at once (a revoked peer, shutdown). */
  signal?: AbortSignal;
  /** Called with byte counts as data moves, for metrics. */
  onBytes?: (direction: "sent" | "received", n: number) => void;
}

export async function relay(tcp: TcpDuplex, stream: Duplex, o: RelayOptions = {}) {
  const result: RelayResult = { sent: 0, received: 0 };
  const stop = new AbortController();
  const fail = (e: unknown) => {
    result.error ??= e;
    stop.abort(e);
  };
  const onAbort = () => fail(o.signal?.reason ?? new Error("relay aborted"));
  o.signal?.addEventListener("abort", onAbort, { once: true });
  const counter = (dir: "sent" | "received") =>
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        result[dir] += chunk.length;
        o.onBytes?.(dir, chunk.length);
        ctl.enqueue(chunk);
      },
    });
  const up = pipeWithLeftover(tcp.readable, o.tcpLeftover, counter("sent"), stream.writable, stop)
    .catch(fail);
  const down = pipeWithLeftover(
    stream.readable,
    o.streamLeftover,
    counter("received"),
    tcp.writable,
    stop,
  ).catch(fail);
  await Promise.all([up, down]);
  o.signal?.removeEventListener("abort", onAbort);
  closeQuietly(tcp.conn);
  return result;
}

async function pipeWithLeftover(
  from: ReadableStream<Uint8Array>,
  leftover: Uint8Array | undefined,
  count: TransformStream<Uint8Array, Uint8Array>,
  to: WritableStream<Uint8Array>,
  stop: AbortController,
): Promise<void> {
  if (stop.signal.aborted) throw stop.signal.reason;
  // Start draining the counter first: its readable side has no buffer, so a leftover
  // written before anyone reads would wait forever.
  const out = count.readable.pipeTo(to, { signal: stop.signal });
  try {
    if (leftover?.length) {
      const w = count.writable.getWriter();
      await w.write(leftover);
      w.releaseLock();
    }
    await from.pipeTo(count.writable, { signal: stop.signal });
  } finally {
    await out;
  }
}

export function closeQuietly(c: { close(): void }): void {
  try {
    c.close();
  } catch {
    // already closed
  }
}

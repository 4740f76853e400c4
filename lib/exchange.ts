/**
 * One florete/1 request and its reply on a stream, the way every client-side caller does it
 * (tunnels, RTT pings, map refresh, the operator's status): send the framed request header,
 * read the node's framed reply within a deadline, then, for an OK reply, either a JSON body
 * checked against its schema (lib/request_bodies.ts) or, for a tunnel, the open stream.
 * Whatever goes wrong is an ExchangeError with a code; the stream is then aborted.
 */
import type { z } from "zod";
import { frame, MAX_FRAME_BYTES } from "./binary.ts";
import type { Duplex } from "./relay.ts";
import { StreamBuffer } from "./stream_buffer.ts";
import {
  decodeTunnelReply,
  MAX_TUNNEL_REPLY_BYTES,
  TunnelHeaderError,
  type TunnelReply,
  TunnelStatus,
} from "./tunnel_header.ts";

export type ExchangeErrorCode =
  /** No complete reply within the deadline. */
  | "timeout"
  /** The caller gave up (its signal fired). */
  | "aborted"
  /** The reply header or body is not what florete/1 says. */
  | "malformed"
  /** The stream or connection failed before the reply was complete. */
  | "stream";

export class ExchangeError extends Error {
  override name = "ExchangeError";
  constructor(readonly code: ExchangeErrorCode, message: string) {
    super(message);
  }
}

export interface ExchangeOptions<T> {
  /** The whole reply (header and body) must arrive within this. */
  timeoutMs: number;
  /** The JSON body that follows an OK reply (status, map); without it none is read. */
  body?: z.ZodType<T>;
  /** A tunnel: the stream stays open for its bytes (otherwise our side is finished at once). */
  keepOpen?: boolean;
  signal?: AbortSignal;
  /** For messages: `n1 status request`. */
  what?: string;
}

export interface ExchangeResult<T> {
  reply: TunnelReply;
  /** The parsed body of an OK reply, when a schema was given. */
  body?: T;
  /** Bytes after the reply already read from the stream (a tunnel's first bytes). */
  leftover: Uint8Array;
  /** keepOpen and OK: the stream's reader and writer, still locked, for the relay (Duplex). */
  reader?: ReadableStreamBYOBReader;
  writer?: WritableStreamDefaultWriter<Uint8Array>;
}

/** Sends `request` (an encoded header, tunnel_header.ts) on `stream` and reads the reply. */
export async function exchange<T = never>(
  stream: Duplex,
  request: Uint8Array,
  o: ExchangeOptions<T>,
): Promise<ExchangeResult<T>> {
  const what = o.what ?? "request";
  const sb = new StreamBuffer(stream.readable);
  let stopped: ExchangeError | undefined;
  const stop = (e: ExchangeError) => {
    stopped ??= e;
    sb.cancel();
  };
  const timer = setTimeout(
    () => stop(new ExchangeError("timeout", `no reply to the ${what} within ${o.timeoutMs} ms`)),
    o.timeoutMs,
  );
  const onAbort = () => stop(new ExchangeError("aborted", `${what} abandoned`));
  if (o.signal?.aborted) onAbort();
  o.signal?.addEventListener("abort", onAbort, { once: true });
  // Kept (not released) for a tunnel: the relay writes through it (lib/relay.ts Duplex).
  const w = stream.writable.getWriter();
  try {
    await w.write(frame(request));
    if (!o.keepOpen) await w.close();
    const reply = decodeTunnelReply(await sb.readFrame(MAX_TUNNEL_REPLY_BYTES));
    if (reply.status !== TunnelStatus.OK) {
      if (o.keepOpen) await w.close().catch(() => {});
      await sb.cancel();
      return { reply, leftover: new Uint8Array(0) };
    }
    if (!o.body) {
      if (!o.keepOpen) return { reply, leftover: sb.release() };
      const { rest, reader } = sb.handOver();
      return { reply, leftover: rest, reader, writer: w };
    }
    const raw = await sb.readFrame(MAX_FRAME_BYTES);
    return { reply, body: parseBody(raw, o.body, what), leftover: sb.release() };
  } catch (e) {
    await w.abort().catch(() => {});
    await sb.cancel();
    if (stopped) throw stopped;
    if (e instanceof ExchangeError) throw e;
    if (e instanceof TunnelHeaderError) {
      throw new ExchangeError("malformed", `reply to the ${what}: ${e.message}`);
    }
    throw new ExchangeError("stream", `${what} failed: ${(e as Error).message ?? e}`);
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener("abort", onAbort);
  }
}

function parseBody<T>(raw: Uint8Array, schema: z.ZodType<T>, what: string): T {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(raw));
  } catch {
    throw new ExchangeError("malformed", `reply to the ${what} is not JSON`);
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    const at = issue?.path.length ? ` at ${issue.path.join(".")}` : "";
    throw new ExchangeError("malformed", `reply to the ${what}${at}: ${issue?.message}`);
  }
  return r.data;
}

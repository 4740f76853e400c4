/**
 * The header that opens every stream after auth, and the node's answer to it.
 *
 *   request  (client → node): u8 version, u8 kind, then per kind:
 *              CONNECT: text service, u16 port     (a tunnel to a service's target)
 *              STATUS:  nothing                    (the node's status, for the operator)
 *              PING:    nothing                    (answered at once: the client's RTT probe)
 *              MAP:     nothing                    (the signed cluster map, one more frame)
 *   reply    (node → client): u8 version, u8 status, text message
 * each carried as one frame (binary.ts). After an OK reply a tunnel stream carries the TCP
 * bytes; a status stream carries one more frame with the status as JSON.
 * The requesting principal is never in the header: the node takes it from the connection's
 * verified auth message.
 */
import { ByteCursor, ByteWriter, DecodeError, truncateUtf8 } from "./binary.ts";
import { Reply, type ReplyCode } from "./socks5.ts";

export const TUNNEL_VERSION = 1;

export const TunnelStatus = {
  OK: 0,
  NOT_ALLOWED: 1,
  UNKNOWN_SERVICE: 2,
  WRONG_PORT: 3,
  TARGET_REFUSED: 4,
  TARGET_UNREACHABLE: 5,
  TARGET_TIMEOUT: 6,
  OVER_CAPACITY: 7,
  INTERNAL: 8,
} as const;
export type TunnelStatus = typeof TunnelStatus[keyof typeof TunnelStatus];
const STATUS_NAMES = new Map<number, string>(
  Object.entries(TunnelStatus).map(([name, v]) => [v, name.toLowerCase()]),
);

/** `target_refused` for TARGET_REFUSED: a metric label and log word. */
export function tunnelStatusName(s: TunnelStatus): string {
  return STATUS_NAMES.get(s) ?? "unknown";
}

export const RequestKind = { CONNECT: 1, STATUS: 2, PING: 3, MAP: 4 } as const;

export interface TunnelRequest {
  service: string;
  port: number;
}

export type StreamRequest =
  | { kind: "connect"; service: string; port: number }
  | { kind: "status" }
  | { kind: "ping" }
  | { kind: "map" };

export interface TunnelReply {
  status: TunnelStatus;
  message: string;
}

/** Longest header body: version + kind + 255-byte name + port. */
export const MAX_TUNNEL_REQUEST_BYTES = 1 + 1 + 1 + 255 + 2;
export const MAX_TUNNEL_REPLY_BYTES = 1 + 1 + 1 + 255;

export class TunnelHeaderError extends Error {
  override name = "TunnelHeaderError";
}

export function encodeTunnelRequest(r: TunnelRequest): Uint8Array {
  return new ByteWriter().u8(TUNNEL_VERSION).u8(RequestKind.CONNECT).text(r.service).u16(r.port)
    .finish();
}

export function encodeStatusRequest(): Uint8Array {
  return new ByteWriter().u8(TUNNEL_VERSION).u8(RequestKind.STATUS).finish();
}

/** Asks for the node's signed cluster map (map_signature.ts). */
export function encodeMapRequest(): Uint8Array {
  return new ByteWriter().u8(TUNNEL_VERSION).u8(RequestKind.MAP).finish();
}

/** Answered at once with an OK reply: the client measures the round trip (RTT). */
export function encodePingRequest(): Uint8Array {
  return new ByteWriter().u8(TUNNEL_VERSION).u8(RequestKind.PING).finish();
}

export function decodeStreamRequest(body: Uint8Array): StreamRequest {
  return decode(body, (c) => {
    const kind = c.u8();
    if (kind === RequestKind.STATUS) return { kind: "status" };
    if (kind === RequestKind.PING) return { kind: "ping" };
    if (kind === RequestKind.MAP) return { kind: "map" };
    if (kind !== RequestKind.CONNECT) throw new TunnelHeaderError(`unknown request kind ${kind}`);
    const service = c.text();
    const port = c.u16();
    if (service.length === 0) throw new TunnelHeaderError("empty service name");
    if (port === 0) throw new TunnelHeaderError("port 0");
    return { kind: "connect", service, port };
  });
}

/** A CONNECT request, or TunnelHeaderError for anything else. */
export function decodeTunnelRequest(body: Uint8Array): TunnelRequest {
  const r = decodeStreamRequest(body);
  if (r.kind !== "connect") throw new TunnelHeaderError(`expected a connect request`);
  return { service: r.service, port: r.port };
}

export function encodeTunnelReply(r: TunnelReply): Uint8Array {
  // Messages are for logs; cut on a code point boundary to stay within the text field.
  return new ByteWriter().u8(TUNNEL_VERSION).u8(r.status).text(truncateUtf8(r.message, 255))
    .finish();
}

export function decodeTunnelReply(body: Uint8Array): TunnelReply {
  return decode(body, (c) => {
    const status = c.u8();
    if (!STATUS_NAMES.has(status)) throw new TunnelHeaderError(`unknown status ${status}`);
    return { status: status as TunnelStatus, message: c.text() };
  });
}

function decode<T>(body: Uint8Array, fields: (c: ByteCursor) => T): T {
  try {
    const c = new ByteCursor(body);
    const v = c.u8();
    if (v !== TUNNEL_VERSION) throw new TunnelHeaderError(`tunnel header version ${v} (want 1)`);
    const out = fields(c);
    c.end();
    return out;
  } catch (e) {
    if (e instanceof DecodeError) throw new TunnelHeaderError(e.message);
    throw e;
  }
}

/** What the SOCKS client is told when the node answers with `status`. */
export function socksReplyFor(status: TunnelStatus): ReplyCode {
  switch (status) {
    case TunnelStatus.OK:
      return Reply.SUCCEEDED;
    case TunnelStatus.NOT_ALLOWED:
    case TunnelStatus.WRONG_PORT:
      return Reply.NOT_ALLOWED;
    case TunnelStatus.UNKNOWN_SERVICE:
    case TunnelStatus.TARGET_UNREACHABLE:
      return Reply.HOST_UNREACHABLE;
    case TunnelStatus.TARGET_REFUSED:
      return Reply.CONNECTION_REFUSED;
    case TunnelStatus.TARGET_TIMEOUT:
      return Reply.TTL_EXPIRED;
    case TunnelStatus.OVER_CAPACITY:
    case TunnelStatus.INTERNAL:
      return Reply.GENERAL_FAILURE;
  }
}

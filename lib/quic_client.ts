/**
 * Dialling a node: the QUIC handshake (the node proves its identity with its certificate for
 * `<node>.node.<cluster>.internal`) followed by our auth message on the first stream (auth.ts).
 * Shared by the agent's peer pool and florctl, which speaks to nodes as the operator.
 */
import type * as x509 from "@peculiar/x509";
import { buildAuthMessage, decodeAuthReply } from "./auth.ts";
import { frame } from "./binary.ts";
import type { HostPort } from "./host_port.ts";
import { nodeServerName, spiffeId } from "./identity.ts";
import {
  ALPN,
  AUTH_TIMEOUT_MS,
  CloseCode,
  IDLE_TIMEOUT_MS,
  KEEP_ALIVE_MS,
  MAX_STREAMS_PER_CONNECTION,
} from "./protocol.ts";
import { runningTimeout } from "./stall_watch.ts";
import { StreamBuffer } from "./stream_buffer.ts";
import { type Congestion, congestionControlOption } from "./congestion.ts";

export type PeerErrorCode = "unknown_node" | "unreachable" | "handshake" | "auth_denied";

export class PeerError extends Error {
  override name = "PeerError";
  constructor(readonly code: PeerErrorCode, message: string) {
    super(message);
  }
}

/** How long a connection attempt (QUIC handshake) may take before the node is reported
 * unreachable: under the 3 s within which a SOCKS client must hear that a node is down.
 * The auth reply then has AUTH_TIMEOUT_MS. Both count only time this process was running
 * (stall_watch.ts): in the soak, two users stalled inside the handshake, gave up at 2.5 s on
 * a node that had completed it, and refused the request. */
export const CONNECT_TIMEOUT_MS = 2_500;

export interface DialNode {
  cluster: string;
  node: string;
  endpoint: HostPort;
  caPem: string;
  /** The identity we authenticate as. */
  cert: x509.X509Certificate;
  key: CryptoKey;
  /** For messages: `user:alice`. */
  as: string;
  /** The agent's congestion controller (florctl's short talks keep Deno's default). */
  congestion?: Congestion;
  /** A shared endpoint whose UDP buffers were raised; without one Deno binds a new one. */
  quicEndpoint?: Deno.QuicEndpoint;
  /** The handshake's deadline (default CONNECT_TIMEOUT_MS). */
  timeoutMs?: number;
}

export async function connectNode(d: DialNode): Promise<Deno.QuicConn> {
  const where = `${d.node} (${d.endpoint.host}:${d.endpoint.port})`;
  using deadline = runningTimeout(d.timeoutMs ?? CONNECT_TIMEOUT_MS);
  let conn: Deno.QuicConn;
  try {
    conn = await raceSignal(
      Deno.connectQuic<false>({
        hostname: d.endpoint.host,
        port: d.endpoint.port,
        serverName: nodeServerName(d.cluster, d.node),
        caCerts: [d.caPem],
        alpnProtocols: [ALPN],
        keepAliveInterval: KEEP_ALIVE_MS,
        maxIdleTimeout: IDLE_TIMEOUT_MS,
        maxConcurrentBidirectionalStreams: MAX_STREAMS_PER_CONNECTION,
        ...(d.congestion ? { congestionControl: congestionControlOption(d.congestion) } : {}),
        ...(d.quicEndpoint ? { endpoint: d.quicEndpoint } : {}),
      }),
      deadline.signal,
      (c) => c.close({ closeCode: CloseCode.NORMAL, reason: "connect timed out" }),
    );
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    if (deadline.signal.aborted) throw new PeerError("unreachable", `${where} did not answer`);
    if (/handshake|certificate|alert/i.test(msg)) {
      throw new PeerError("handshake", `TLS handshake with ${where} failed: ${msg}`);
    }
    throw new PeerError("unreachable", `cannot reach ${where}: ${msg}`);
  }
  deadline.clear(); // the handshake is done; the auth reply has its own deadline
  try {
    const stream = await conn.createBidirectionalStream();
    const w = stream.writable.getWriter();
    await w.write(frame(
      await buildAuthMessage({
        cert: d.cert,
        key: d.key,
        serverId: spiffeId(d.cluster, { kind: "node", name: d.node }),
        now: Date.now(),
      }),
    ));
    await w.close();
    using authDeadline = runningTimeout(AUTH_TIMEOUT_MS);
    const reply = decodeAuthReply(
      await raceSignal(new StreamBuffer(stream.readable).readFrame(512), authDeadline.signal),
    );
    if (!reply.ok) throw new PeerError("auth_denied", `${d.node} refused ${d.as}: ${reply.reason}`);
  } catch (e) {
    conn.close({ closeCode: CloseCode.NORMAL, reason: "auth failed" });
    if (e instanceof PeerError) throw e;
    throw new PeerError("auth_denied", `${d.node} closed the connection during auth: ${e}`);
  }
  return conn;
}

/** Rejects when the signal fires; a value that arrives late is handed to `discard`. */
export function raceSignal<T>(
  p: Promise<T>,
  signal: AbortSignal,
  discard?: (v: T) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted) discard?.(v);
        else resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/** Whether the connection has closed (within `waitMs`), and whether by idle timeout: a
 * timed-out connection means the node stopped answering, so a retry would only wait again. */
export async function closeState(conn: Deno.QuicConn, waitMs = 20) {
  const r = await Promise.race([
    conn.closed.then(() => "closed", (e) => String((e as Error).message ?? e)),
    new Promise<string>((resolve) => setTimeout(() => resolve("open"), waitMs)),
  ]);
  return { closed: r !== "open", timedOut: /timed out/i.test(r) };
}

/**
 * The client side of florete/1: one authenticated QUIC connection per (local identity,
 * remote node), opened on first use, shared by every tunnel, and dropped when it closes so
 * the next tunnel reconnects.
 */
import { buildAuthMessage, decodeAuthReply } from "../lib/auth.ts";
import { frame } from "../lib/binary.ts";
import { parseHostPort } from "../lib/cluster.ts";
import { nodeServerName, spiffeId } from "../lib/identity.ts";
import type { EventLog } from "../lib/log.ts";
import {
  ALPN,
  AUTH_TIMEOUT_MS,
  CloseCode,
  IDLE_TIMEOUT_MS,
  KEEP_ALIVE_MS,
  MAX_STREAMS_PER_CONNECTION,
} from "../lib/protocol.ts";
import { StreamBuffer } from "../lib/stream_buffer.ts";
import type { AgentMetrics } from "./agent_metrics.ts";
import type { LocalIdentity, Runtime } from "./runtime.ts";

export type PeerErrorCode = "unknown_node" | "unreachable" | "handshake" | "auth_denied";

export class PeerError extends Error {
  override name = "PeerError";
  constructor(readonly code: PeerErrorCode, message: string) {
    super(message);
  }
}

/** How long a connection attempt (QUIC handshake + auth) may take before the SOCKS client
 * is told the node is unreachable. */
export const CONNECT_TIMEOUT_MS = 3_000;

export interface PeerPool {
  connection(identity: LocalIdentity, node: string): Promise<Deno.QuicConn>;
  /** Drops a connection that failed in use so the next request makes a new one. */
  forget(identity: LocalIdentity, node: string, conn: Deno.QuicConn): void;
  /** Closes every connection of identities whose certificate changed or was revoked. */
  closeAll(reason: string): void;
}

export function createPeerPool(rt: Runtime, log: EventLog, metrics: AgentMetrics): PeerPool {
  const pool = new Map<string, Promise<Deno.QuicConn>>();

  async function connect(identity: LocalIdentity, node: string): Promise<Deno.QuicConn> {
    const cluster = rt.view.cluster;
    const entry = cluster.nodes[node];
    if (!entry) throw new PeerError("unknown_node", `node ${node} is not in the cluster map`);
    const ep = parseHostPort(entry.endpoint);
    const serverName = nodeServerName(cluster.cluster, node);
    const deadline = AbortSignal.timeout(CONNECT_TIMEOUT_MS);
    let conn: Deno.QuicConn;
    try {
      conn = await raceSignal(
        Deno.connectQuic<false>({
          hostname: ep.host,
          port: ep.port,
          serverName,
          caCerts: [rt.caPem],
          alpnProtocols: [ALPN],
          keepAliveInterval: KEEP_ALIVE_MS,
          maxIdleTimeout: IDLE_TIMEOUT_MS,
          maxConcurrentBidirectionalStreams: MAX_STREAMS_PER_CONNECTION,
        }),
        deadline,
        (c) => c.close({ closeCode: CloseCode.NORMAL, reason: "connect timed out" }),
      );
    } catch (e) {
      const msg = (e as Error).message ?? String(e);
      metrics.peerConnects.inc({ node, result: "unreachable" });
      if (deadline.aborted) {
        throw new PeerError("unreachable", `node ${node} (${entry.endpoint}) did not answer`);
      }
      if (/handshake|certificate|alert/i.test(msg)) {
        throw new PeerError("handshake", `TLS handshake with ${node} failed: ${msg}`);
      }
      throw new PeerError("unreachable", `cannot reach ${node} (${entry.endpoint}): ${msg}`);
    }
    try {
      const stream = await conn.createBidirectionalStream();
      const w = stream.writable.getWriter();
      await w.write(frame(
        await buildAuthMessage({
          cert: identity.cert,
          key: identity.key,
          serverId: spiffeId(cluster.cluster, { kind: "node", name: node }),
          now: Date.now(),
        }),
      ));
      await w.close();
      const reply = decodeAuthReply(
        await raceSignal(
          new StreamBuffer(stream.readable).readFrame(512),
          AbortSignal.timeout(AUTH_TIMEOUT_MS),
        ),
      );
      if (!reply.ok) {
        throw new PeerError("auth_denied", `${node} refused ${identity.id}: ${reply.reason}`);
      }
    } catch (e) {
      conn.close({ closeCode: CloseCode.NORMAL, reason: "auth failed" });
      metrics.peerConnects.inc({ node, result: "auth_denied" });
      if (e instanceof PeerError) throw e;
      throw new PeerError("auth_denied", `${node} closed the connection during auth: ${e}`);
    }
    metrics.peerConnects.inc({ node, result: "ok" });
    metrics.quicConnections.add({ side: "client" }, 1);
    log.info("peer.up", { node, identity: identity.id });
    return conn;
  }

  const keyOf = (identity: LocalIdentity, node: string) => `${identity.id}\u0000${node}`;
  const current = new Map<string, Deno.QuicConn>();

  return {
    forget(identity, node, conn) {
      const key = keyOf(identity, node);
      if (current.get(key) === conn) {
        pool.delete(key);
        current.delete(key);
      }
      conn.close({ closeCode: CloseCode.NORMAL, reason: "failed in use" });
    },
    connection(identity, node) {
      const key = keyOf(identity, node);
      let p = pool.get(key);
      if (!p) {
        p = connect(identity, node);
        pool.set(key, p);
        p.then((conn) => {
          current.set(key, conn);
          return conn.closed.catch(() => ({ closeCode: -1, reason: "" })).then((info) => {
            if (pool.get(key) === p) pool.delete(key);
            if (current.get(key) === conn) current.delete(key);
            metrics.quicConnections.add({ side: "client" }, -1);
            log.info("peer.down", { node, identity: identity.id, ...closeFields(info) });
          });
        }).catch(() => {
          if (pool.get(key) === p) pool.delete(key);
        });
      }
      return p;
    },
    closeAll(reason) {
      for (const p of pool.values()) {
        p.then((c) => c.close({ closeCode: CloseCode.SHUTDOWN, reason })).catch(() => {});
      }
      pool.clear();
    },
  };
}

function closeFields(info: Deno.QuicCloseInfo | undefined) {
  return info ? { close_code: info.closeCode, reason: info.reason } : {};
}

/** Rejects when the signal fires; a value that arrives late is handed to `discard`. */
function raceSignal<T>(p: Promise<T>, signal: AbortSignal, discard?: (v: T) => void): Promise<T> {
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

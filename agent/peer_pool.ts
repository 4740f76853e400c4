/**
 * The client side of florete/1: one authenticated QUIC connection per (local identity,
 * remote node), opened on first use, shared by every tunnel, and dropped when it closes so
 * the next tunnel reconnects.
 */
import { parseHostPort } from "../lib/cluster.ts";
import type { EventLog } from "../lib/log.ts";
import { CloseCode } from "../lib/protocol.ts";
import { connectNode, PeerError } from "../lib/quic_client.ts";
import type { AgentMetrics } from "./agent_metrics.ts";
import type { LocalIdentity, Runtime } from "./runtime.ts";

export interface PeerPool {
  connection(identity: LocalIdentity, node: string): Promise<Deno.QuicConn>;
  /** Drops a connection that failed in use so the next request makes a new one. */
  forget(identity: LocalIdentity, node: string, conn: Deno.QuicConn): void;
  /** Closes every connection (shutdown). */
  closeAll(reason: string): void;
}

export function createPeerPool(rt: Runtime, log: EventLog, metrics: AgentMetrics): PeerPool {
  const pool = new Map<string, Promise<Deno.QuicConn>>();

  async function connect(identity: LocalIdentity, node: string): Promise<Deno.QuicConn> {
    const cluster = rt.view.cluster;
    const entry = cluster.nodes[node];
    if (!entry) throw new PeerError("unknown_node", `node ${node} is not in the cluster map`);
    let conn: Deno.QuicConn;
    try {
      conn = await connectNode({
        cluster: cluster.cluster,
        node,
        endpoint: parseHostPort(entry.endpoint),
        caPem: rt.caPem,
        cert: identity.cert,
        key: identity.key,
        as: identity.id,
      });
    } catch (e) {
      const result = e instanceof PeerError ? e.code : "error";
      metrics.peerConnects.inc({ node, result });
      throw e;
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

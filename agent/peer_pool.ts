/**
 * The client side of florete/1: one authenticated QUIC connection per (local identity,
 * remote node), opened on first use and shared by every tunnel.
 *
 * Each connection is watched: QUIC keep-alives every second and a 2 s idle timeout detect a
 * dead node (`peer.down`); a PING every 2 s measures the round-trip time; and while the pair
 * is in use, a lost connection is re-made every second until the node answers again
 * (`peer.up`), so tunnels find it ready within about a second of the node's return.
 */
import { parseHostPort } from "../lib/cluster.ts";
import { frame } from "../lib/binary.ts";
import type { EventLog } from "../lib/log.ts";
import { CloseCode } from "../lib/protocol.ts";
import { collectClosedConnectionsSoon } from "../lib/memory.ts";
import { connectNode, PeerError } from "../lib/quic_client.ts";
import { StreamBuffer } from "../lib/stream_buffer.ts";
import {
  decodeTunnelReply,
  encodePingRequest,
  MAX_TUNNEL_REPLY_BYTES,
  TunnelStatus,
} from "../lib/tunnel_header.ts";
import type { AgentMetrics } from "./agent_metrics.ts";
import type { LocalIdentity, Runtime } from "./runtime.ts";

/** How often a live connection is probed for its RTT. */
export const PING_INTERVAL_MS = 2_000;
/** How often a lost connection that is still wanted is re-made. */
export const RECONNECT_INTERVAL_MS = 1_000;
/** A pair unused for this long is not re-made after it drops (it reconnects on demand). */
export const WANTED_FOR_MS = 10 * 60_000;
/** Weight of the newest RTT sample in the moving average. */
const RTT_ALPHA = 0.3;

export interface PeerState {
  node: string;
  identity: string;
  up: boolean;
  /** When `up` last changed (ms since epoch). */
  since: number;
  rttMs?: number;
  lastError?: string;
  connects: number;
}

export interface PeerPool {
  connection(identity: LocalIdentity, node: string): Promise<Deno.QuicConn>;
  /** Drops a connection that failed in use so the next request makes a new one. */
  forget(identity: LocalIdentity, node: string, conn: Deno.QuicConn): void;
  peers(): PeerState[];
  /** Closes every connection (shutdown). */
  closeAll(reason: string): void;
}

interface Entry {
  identity: LocalIdentity;
  state: PeerState;
  conn?: Deno.QuicConn;
  pending?: Promise<Deno.QuicConn>;
  lastUsed: number;
  slow: boolean;
  timer?: ReturnType<typeof setTimeout>;
}

export function createPeerPool(rt: Runtime, log: EventLog, metrics: AgentMetrics): PeerPool {
  const entries = new Map<string, Entry>();
  let closing = false;

  function entryFor(identity: LocalIdentity, node: string): Entry {
    const key = `${identity.id}\u0000${node}`;
    let e = entries.get(key);
    if (!e) {
      e = {
        identity,
        state: { node, identity: identity.id, up: false, since: Date.now(), connects: 0 },
        lastUsed: Date.now(),
        slow: false,
      };
      entries.set(key, e);
    }
    e.identity = identity; // a reload may have replaced the certificate
    return e;
  }

  function setUp(e: Entry, up: boolean, fields: Record<string, unknown>) {
    const changed = e.state.up !== up;
    e.state.up = up;
    if (changed) e.state.since = Date.now();
    metrics.peerUp.set({ node: e.state.node }, up ? 1 : 0);
    if (changed || up) {
      log[up ? "info" : "warn"](up ? "peer.up" : "peer.down", {
        node: e.state.node,
        identity: e.identity.id,
        ...fields,
      });
    }
  }

  function connect(e: Entry): Promise<Deno.QuicConn> {
    if (e.pending) return e.pending;
    const node = e.state.node;
    const p = (async () => {
      const cluster = rt.view.cluster;
      const entry = cluster.nodes[node];
      if (!entry) throw new PeerError("unknown_node", `node ${node} is not in the cluster map`);
      try {
        const conn = await connectNode({
          cluster: cluster.cluster,
          node,
          endpoint: parseHostPort(entry.endpoint),
          caPem: rt.caPem,
          cert: e.identity.cert,
          key: e.identity.key,
          as: e.identity.id,
        });
        metrics.peerConnects.inc({ node, result: "ok" });
        return conn;
      } catch (err) {
        metrics.peerConnects.inc({ node, result: err instanceof PeerError ? err.code : "error" });
        throw err;
      }
    })();
    e.pending = p;
    p.then((conn) => {
      e.pending = undefined;
      if (closing) return conn.close({ closeCode: CloseCode.SHUTDOWN, reason: "shutting down" });
      e.conn = conn;
      e.state.connects++;
      e.state.lastError = undefined;
      metrics.quicConnections.add({ side: "client" }, 1);
      setUp(e, true, { connects: e.state.connects });
      watch(e, conn);
    }, (err) => {
      e.pending = undefined;
      e.state.lastError = (err as Error).message;
      if (e.state.up) setUp(e, false, { reason: e.state.lastError });
      scheduleReconnect(e);
    });
    return p;
  }

  function watch(e: Entry, conn: Deno.QuicConn) {
    const ping = setInterval(() => probe(e, conn), PING_INTERVAL_MS);
    probe(e, conn);
    conn.closed.then(
      (info) => `closed (${info.closeCode}${info.reason ? `: ${info.reason}` : ""})`,
      (err) => String((err as Error).message ?? err),
    ).then((reason) => {
      clearInterval(ping);
      collectClosedConnectionsSoon();
      metrics.quicConnections.add({ side: "client" }, -1);
      if (e.conn !== conn) return;
      e.conn = undefined;
      e.state.rttMs = undefined;
      e.state.lastError = reason;
      setUp(e, false, { reason });
      scheduleReconnect(e);
    });
  }

  async function probe(e: Entry, conn: Deno.QuicConn) {
    const t0 = performance.now();
    try {
      const stream = await conn.createBidirectionalStream();
      const w = stream.writable.getWriter();
      await w.write(frame(encodePingRequest()));
      await w.close();
      const reply = decodeTunnelReply(
        await new StreamBuffer(stream.readable).readFrame(MAX_TUNNEL_REPLY_BYTES),
      );
      if (reply.status !== TunnelStatus.OK) return;
    } catch {
      return; // a dead connection is reported by its close, not here
    }
    const rtt = performance.now() - t0;
    e.state.rttMs = e.state.rttMs === undefined
      ? rtt
      : e.state.rttMs * (1 - RTT_ALPHA) + rtt * RTT_ALPHA;
    metrics.peerRtt.set({ node: e.state.node }, e.state.rttMs / 1000);
    const warn = rt.loaded.config.limits.rtt_ms_warn;
    if (!e.slow && e.state.rttMs > warn) {
      e.slow = true;
      log.warn("peer.slow", {
        node: e.state.node,
        rtt_ms: round(e.state.rttMs),
        threshold_ms: warn,
      });
    } else if (e.slow && e.state.rttMs < warn * 0.8) {
      e.slow = false;
      log.info("peer.recovered", { node: e.state.node, rtt_ms: round(e.state.rttMs) });
    }
  }

  function scheduleReconnect(e: Entry) {
    if (closing || e.timer || Date.now() - e.lastUsed > WANTED_FOR_MS) return;
    e.timer = setTimeout(() => {
      e.timer = undefined;
      if (!e.conn) connect(e).catch(() => {});
    }, RECONNECT_INTERVAL_MS);
  }

  return {
    connection(identity, node) {
      const e = entryFor(identity, node);
      e.lastUsed = Date.now();
      return e.conn ? Promise.resolve(e.conn) : connect(e);
    },
    forget(identity, node, conn) {
      const e = entryFor(identity, node);
      if (e.conn === conn) e.conn = undefined;
      conn.close({ closeCode: CloseCode.NORMAL, reason: "failed in use" });
    },
    peers() {
      return [...entries.values()].map((e) => ({ ...e.state }));
    },
    closeAll(reason) {
      closing = true;
      for (const e of entries.values()) {
        clearTimeout(e.timer);
        e.conn?.close({ closeCode: CloseCode.SHUTDOWN, reason });
        e.pending?.then((c) => c.close({ closeCode: CloseCode.SHUTDOWN, reason })).catch(() => {});
      }
    },
  };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

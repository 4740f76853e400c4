/**
 * The client side of florete/1: authenticated QUIC connections per (local identity, remote
 * node), opened on first use and shared by every tunnel.
 *
 * One connection carries MAX_STREAMS_PER_CONNECTION streams, a few of them kept for control
 * requests; when every connection is full another is opened, and past a bound a tunnel waits
 * for a slot (agent/tunnel_slots.ts decides). A stream that fails fails alone: only a
 * connection's own close ends the tunnels it carries.
 *
 * Health (agent/peer_health.ts decides, this file only feeds it): a PING every second
 * measures the RTT and detects a dead node: one that gets no answer in time marks the node
 * down at once (`answering` lets a tunnel request ask the same question). Only time this
 * agent was running counts against a ping (lib/stall_watch.ts): a stall of our own is not
 * the node's silence. QUIC's idle timeout (lib/protocol.ts) is long, so that a few seconds'
 * stall of either agent does not end the connection and the tunnels on it. While the pair is
 * in use and the node is down (no connection, or a silent one), a fresh first connection is
 * tried every RECONNECT_INTERVAL_MS until the node answers again (`peer.up`); a silent
 * connection it replaces is closed unless it answers after all (a node that restarted never
 * will).
 */
import { entryOf } from "../lib/cluster.ts";
import type { EventLog } from "../lib/log.ts";
import { CloseCode, IDLE_TIMEOUT_MS } from "../lib/protocol.ts";
import { collectClosedConnectionsSoon } from "../lib/memory.ts";
import { closeState, CONNECT_TIMEOUT_MS, connectNode, PeerError } from "../lib/quic_client.ts";
import { exchange } from "../lib/exchange.ts";
import { encodePingRequest } from "../lib/tunnel_header.ts";
import type { PeerStateBody } from "../lib/request_bodies.ts";
import type { AgentMetrics } from "./agent_metrics.ts";
import { type HealthEvent, initialHealth, type PeerHealth, stepHealth } from "./peer_health.ts";
import type { LocalIdentity, RuntimeSource } from "./runtime.ts";
import { placeTunnel, TUNNEL_STREAMS_PER_CONNECTION } from "./tunnel_slots.ts";
import { runningMark, runningMsSince, runningTimeout } from "../lib/stall_watch.ts";

/** How often a live connection is probed: its RTT, and whether the node is alive at all.
 * A node killed with -9 is marked down within this + MAX_PING_TIMEOUT_MS = 2.6 s, inside
 * the maintenance bound of 3 s, now that QUIC's idle timeout no longer detects it. Costs
 * one short stream (a 2-packet exchange each way) per second per (identity, node) pair. */
export const PING_INTERVAL_MS = 1_000;
/** How long a ping may go unanswered before the node counts as not answering: well above a
 * loaded node's reply time (tens of ms on a busy host) and the QUIC retransmission of a lost
 * packet, and low enough that a request to a dead node is refused within 2 s. Stretched to
 * PING_RTT_FACTOR smoothed RTTs on long paths. Counted in time this agent was running. */
export const PING_TIMEOUT_MS = 1_000;
const PING_RTT_FACTOR = 4;
/** The stretch stops here: with the tunnel's 250 ms before it asks (tunnel_client.ts), a dead
 * node is still refused within 1.85 s of the request, inside the 2 s promise. */
export const MAX_PING_TIMEOUT_MS = 1_600;
/** Weight of the newest answer time in its moving average: a burst that slows the node
 * down stretches the timeout within a few answers. */
const ANSWER_ALPHA = 0.3;
/** How often a lost (or silent) connection that is still wanted is re-made: dials start on
 * this grid, each bounded by it, so a node that comes back gets a handshake within half a
 * second (the maintenance bound: back within 2 s of its start, and a node just started is
 * slow to finish its first auths). A node that is down answers no Initial packet and Linux
 * does not report the ICMP error to an unconnected UDP socket, so a full CONNECT_TIMEOUT_MS
 * dial plus a wait was a 3.5 s cycle (measured 2.7 s to the first success after a restart;
 * with a 1 s grid the 3-minute testbed measured 2.03 s after agent.started, bound 2 s). On a
 * long path the bound stretches like the ping timeout (reconnectTimeout). A dial made for a
 * request keeps the full CONNECT_TIMEOUT_MS. Costs one 1,200-byte Initial per pair every
 * half second while its node is down. */
export const RECONNECT_INTERVAL_MS = 500;
/** A pair unused for this long is not re-made after it drops (it reconnects on demand). */
export const WANTED_FOR_MS = 10 * 60_000;
/** An extra connection with no tunnels for this long is closed (the first one stays). */
export const EXTRA_IDLE_MS = 30_000;

export type PeerState = PeerStateBody;

/** A stream for one tunnel; `release()` once the tunnel is over frees its slot. */
export interface TunnelSlot {
  stream: Deno.QuicBidirectionalStream;
  conn: Deno.QuicConn;
  release(): void;
  /** Something arrived from the node on this connection: it is alive. */
  heard(): void;
  /** The node answered a request sent `ms` ago: alive, and that busy (see pingTimeout). */
  answered(ms: number): void;
}

export interface PeerPool {
  /** The first connection to the node, for control requests (never short of stream slots). */
  connection(identity: LocalIdentity, node: string): Promise<Deno.QuicConn>;
  /** A stream for a tunnel on a connection with a free slot (see the header). Rejects with
   * PeerError when the node cannot be reached, or when `signal` fires while waiting. */
  tunnelStream(identity: LocalIdentity, node: string, signal?: AbortSignal): Promise<TunnelSlot>;
  /** Whether the node still answers on `conn`: true if anything arrived on it since `since`
   * (performance.now() time) or a ping is answered within the ping timeout. Concurrent
   * callers share one ping. */
  answering(identity: LocalIdentity, node: string, conn: Deno.QuicConn, since: number): Promise<
    boolean
  >;
  /** A request to the node failed (recorded as the pair's last error, for `flor status`). */
  requestFailed(identity: LocalIdentity, node: string, reason: string): void;
  peers(): PeerState[];
  /** Closes every connection (shutdown). */
  closeAll(reason: string): void;
}

interface Lane {
  conn: Deno.QuicConn;
  tunnels: number;
  /** The health pings of a first connection (stopped when it is replaced or closed). */
  pingTimer?: ReturnType<typeof setInterval>;
  /** A first connection replaced while silent: it takes no new tunnels. */
  retired?: boolean;
  /** The node refused a new stream here (no credit) since its last tunnel ended. */
  starved?: boolean;
  probe?: Promise<"alive" | "silent" | "closed">;
  idleTimer?: ReturnType<typeof setTimeout>;
}

interface Entry {
  identity: LocalIdentity;
  node: string;
  health: PeerHealth;
  /** lanes[0], if open, is the first connection: control traffic and health pings. */
  lanes: Lane[];
  primary?: Lane;
  pending?: Promise<Lane>;
  extraPending?: Promise<Lane>;
  /** Tunnels waiting for a slot, oldest first. Bounded by the agent's max_tunnels. */
  waiting: (() => void)[];
  lastUsed: number;
  /** performance.now() of the last thing heard from the node on any of its connections: a
   * node that answers on one is alive, however busy the others are. */
  heardAt: number;
  /** Smoothed time the node takes to answer a request (ms). */
  answerMs?: number;
  timer?: ReturnType<typeof setTimeout>;
}

/** What every function of one pool shares. */
interface Pool {
  runtime: RuntimeSource;
  log: EventLog;
  metrics: AgentMetrics;
  endpoint: () => Deno.QuicEndpoint;
  entries: Map<string, Entry>;
  closing: boolean;
}

export function createPeerPool(
  runtime: RuntimeSource,
  log: EventLog,
  metrics: AgentMetrics,
  /** The shared outgoing endpoint, opened on first use (a node without services never dials). */
  endpoint: () => Deno.QuicEndpoint,
): PeerPool {
  const pool: Pool = { runtime, log, metrics, endpoint, entries: new Map(), closing: false };
  return {
    async connection(identity, node) {
      const e = entryFor(pool, identity, node);
      e.lastUsed = Date.now();
      return (e.primary ?? await connectPrimary(pool, e)).conn;
    },
    tunnelStream: (identity, node, signal) => tunnelStream(pool, identity, node, signal),
    answering(identity, node, conn, since) {
      const e = entryFor(pool, identity, node);
      const lane = e.lanes.find((l) => l.conn === conn);
      return lane ? answering(pool, e, lane, since) : Promise.resolve(false);
    },
    requestFailed(identity, node, reason) {
      feed(pool, entryFor(pool, identity, node), { type: "request_failed", reason });
    },
    peers() {
      return [...pool.entries.values()].map((e) => ({
        node: e.node,
        identity: e.identity.id,
        up: e.health.up,
        since: e.health.since,
        rttMs: e.health.rttMs,
        lastError: e.health.lastError,
        connects: e.health.connects,
        connections: e.lanes.length,
      }));
    },
    closeAll(reason) {
      pool.closing = true;
      for (const e of pool.entries.values()) {
        clearTimeout(e.timer);
        for (const l of e.lanes) l.conn.close({ closeCode: CloseCode.SHUTDOWN, reason });
        for (const w of e.waiting.splice(0)) w();
      }
    },
  };
}

function entryFor(pool: Pool, identity: LocalIdentity, node: string): Entry {
  const key = `${identity.id}\u0000${node}`;
  let e = pool.entries.get(key);
  if (!e) {
    e = {
      identity,
      node,
      health: initialHealth(Date.now()),
      lanes: [],
      waiting: [],
      lastUsed: 0,
      heardAt: 0,
    };
    pool.entries.set(key, e);
  }
  e.identity = identity; // a reload may have replaced the certificate
  return e;
}

function feed(pool: Pool, e: Entry, ev: HealthEvent) {
  const warnMs = pool.runtime.current().loaded.config.limits.rtt_ms_warn;
  const step = stepHealth(e.health, ev, Date.now(), warnMs);
  e.health = step.health;
  pool.metrics.peerUp.set({ node: e.node }, e.health.up ? 1 : 0);
  if (e.health.rttMs !== undefined) {
    pool.metrics.peerRtt.set({ node: e.node }, e.health.rttMs / 1000);
  }
  for (const l of step.logs) {
    pool.log[l.level](l.event, { node: e.node, identity: e.identity.id, ...l.fields });
  }
}

async function dial(pool: Pool, e: Entry, timeoutMs?: number): Promise<Deno.QuicConn> {
  const { metrics } = pool;
  const rt = pool.runtime.current();
  const cluster = rt.view.cluster;
  const entry = entryOf(cluster.nodes, e.node);
  if (!entry) throw new PeerError("unknown_node", `node ${e.node} is not in the cluster map`);
  try {
    const conn = await connectNode({
      cluster: cluster.cluster,
      node: e.node,
      endpoint: entry.endpoint,
      caPem: rt.caPem,
      cert: e.identity.cert,
      key: e.identity.key,
      as: e.identity.id,
      congestion: rt.loaded.config.transport.congestion,
      quicEndpoint: pool.endpoint(),
      timeoutMs,
    });
    metrics.peerConnects.inc({ node: e.node, result: "ok" });
    if (pool.closing) {
      conn.close({ closeCode: CloseCode.SHUTDOWN, reason: "shutting down" });
      throw new PeerError("unreachable", "agent shutting down");
    }
    return conn;
  } catch (err) {
    metrics.peerConnects.inc({
      node: e.node,
      result: err instanceof PeerError ? err.code : "error",
    });
    throw err;
  }
}

function newLane(pool: Pool, e: Entry, conn: Deno.QuicConn): Lane {
  const { metrics } = pool;
  const lane: Lane = { conn, tunnels: 0 };
  e.heardAt = performance.now();
  e.lanes.push(lane);
  metrics.quicConnections.add({ side: "client" }, 1);
  conn.closed.then(
    (info) => `closed (${info.closeCode}${info.reason ? `: ${info.reason}` : ""})`,
    (err) => String((err as Error).message ?? err),
  ).then((reason) => {
    clearTimeout(lane.idleTimer);
    clearInterval(lane.pingTimer);
    collectClosedConnectionsSoon();
    metrics.quicConnections.add({ side: "client" }, -1);
    e.lanes = e.lanes.filter((l) => l !== lane);
    wake(e); // waiting tunnels may now open a connection of their own
    if (e.primary !== lane) return;
    e.primary = undefined;
    feed(pool, e, { type: "closed", reason });
    scheduleReconnect(pool, e);
  });
  return lane;
}

/** The first connection: made on demand and re-made while wanted; health follows it. A
 * new one replaces a silent one (the node down by ping), which becomes an ordinary lane. */
function connectPrimary(pool: Pool, e: Entry, timeoutMs?: number): Promise<Lane> {
  if (e.pending) return e.pending;
  const started = performance.now();
  const p = dial(pool, e, timeoutMs).then((conn) => {
    const lane = newLane(pool, e, conn);
    const replaced = e.primary;
    e.primary = lane;
    feed(pool, e, { type: "connected" });
    lane.pingTimer = setInterval(
      () => answering(pool, e, lane, performance.now()),
      PING_INTERVAL_MS,
    );
    answering(pool, e, lane, performance.now());
    if (replaced) retire(pool, e, replaced);
    return lane;
  });
  e.pending = p;
  p.then(() => e.pending = undefined, (err) => {
    e.pending = undefined;
    // With a silent connection still open the pair is already down; the failure is only
    // the reason it stays so.
    const reason = (err as Error).message;
    feed(
      pool,
      e,
      e.primary ? { type: "request_failed", reason } : { type: "connect_failed", reason },
    );
    scheduleReconnect(pool, e, RECONNECT_INTERVAL_MS - (performance.now() - started));
  });
  return p;
}

/** A first connection replaced while silent: no new tunnels on it; closed, with its tunnels,
 * unless the node answers on it within a ping timeout (it was only slow to), in which case
 * its tunnels finish there and it closes once idle like any extra connection. */
function retire(pool: Pool, e: Entry, lane: Lane) {
  clearInterval(lane.pingTimer);
  lane.retired = true;
  // Its own ping: anything heard on the new connection says nothing about this one.
  (lane.probe ??= probe(pool, e, lane, pingTimeout(e))).then((r) => {
    if (r === "closed") return;
    if (r === "alive") {
      lane.retired = false;
      if (lane.tunnels === 0) lane.conn.close({ closeCode: CloseCode.NORMAL, reason: "idle" });
      return;
    }
    lane.conn.close({ closeCode: CloseCode.NORMAL, reason: "silent, replaced" });
  });
}

function connectExtra(pool: Pool, e: Entry): Promise<Lane> {
  if (e.extraPending) return e.extraPending;
  const p = dial(pool, e).then((conn) => newLane(pool, e, conn));
  e.extraPending = p;
  const done = () => e.extraPending = undefined;
  p.then(done, done);
  return p;
}

/** Whether the node answers: true as soon as anything is heard from it after `since`
 * (performance.now() time), false after a ping timeout of silence or when `lane` closed.
 * A ping already in flight is shared; if it gives up before our own deadline, another is
 * sent, so a caller always gets its full timeout. */
async function answering(pool: Pool, e: Entry, lane: Lane, since: number): Promise<boolean> {
  const start = runningMark();
  for (;;) {
    if (e.heardAt > since) return true;
    // Re-read each round: answers that came in meanwhile may have stretched it.
    const left = pingTimeout(e) - runningMsSince(start);
    if (left <= 0) return false;
    const r = await (lane.probe ??= probe(pool, e, lane, left));
    if (r === "alive") return true;
    if (r === "closed") return e.heardAt > since;
  }
}

/** A busy node answers late without being dead: the timeout follows how long it has been
 * taking to answer anything (pings and tunnel requests), up to MAX_PING_TIMEOUT_MS. */
function pingTimeout(e: Entry): number {
  const slowest = Math.max(e.health.rttMs ?? 0, e.answerMs ?? 0);
  return Math.min(MAX_PING_TIMEOUT_MS, Math.max(PING_TIMEOUT_MS, PING_RTT_FACTOR * slowest));
}

function noteAnswer(e: Entry, ms: number) {
  e.answerMs = e.answerMs === undefined ? ms : e.answerMs * (1 - ANSWER_ALPHA) + ms * ANSWER_ALPHA;
}

/** One ping on `lane`; its answer or silence is a health event of the pair. */
async function probe(pool: Pool, e: Entry, lane: Lane, timeoutMs: number) {
  const t0 = performance.now();
  const ran = runningMark();
  try {
    const stream = await lane.conn.createBidirectionalStream();
    // The running-time deadline decides; the wall-clock one only bounds a stall's extension.
    using deadline = runningTimeout(timeoutMs);
    await exchange(stream, encodePingRequest(), {
      timeoutMs: timeoutMs + IDLE_TIMEOUT_MS, // a longer stall ends the connection anyway
      signal: deadline.signal,
      what: `ping to ${e.node}`,
    });
    e.heardAt = performance.now();
    noteAnswer(e, e.heardAt - t0);
    if (lane === e.primary) feed(pool, e, { type: "ping", rttMs: e.heardAt - t0 });
    return "alive";
  } catch {
    const { closed } = await closeState(lane.conn);
    if (closed) return "closed"; // reported by the connection's close, not here
    if (lane === e.primary && e.heardAt <= t0) {
      feed(pool, e, {
        type: "ping_timeout",
        waitedMs: runningMsSince(ran),
        stalledMs: performance.now() - t0 - runningMsSince(ran),
      });
      scheduleReconnect(pool, e); // a node that restarted answers only a new connection
    }
    return "silent";
  } finally {
    lane.probe = undefined;
  }
}

function scheduleReconnect(pool: Pool, e: Entry, delayMs = RECONNECT_INTERVAL_MS) {
  if (pool.closing || e.timer || Date.now() - e.lastUsed > WANTED_FOR_MS) return;
  e.timer = setTimeout(() => {
    e.timer = undefined;
    if (!e.primary || !e.health.up) {
      connectPrimary(pool, e, reconnectTimeout(e)).catch(() => {});
    }
  }, Math.max(0, delayMs));
}

/** A background dial's deadline: RECONNECT_INTERVAL_MS, or PING_RTT_FACTOR times the node's
 * usual answer time on a long path (a handshake and the auth reply take about 2-3 round
 * trips), never over the CONNECT_TIMEOUT_MS a request's own dial gets. */
function reconnectTimeout(e: Entry): number {
  const usual = PING_RTT_FACTOR * (e.answerMs ?? 0);
  return Math.min(CONNECT_TIMEOUT_MS, Math.max(RECONNECT_INTERVAL_MS, usual));
}

function wake(e: Entry) {
  e.waiting.shift()?.();
}

/** A stream on `lane`, or undefined when the node has no stream credit left on it. */
function take(e: Entry, lane: Lane): Promise<TunnelSlot | undefined> {
  lane.tunnels++;
  clearTimeout(lane.idleTimer);
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    lane.tunnels--;
    lane.starved = false;
    if (lane.tunnels === 0 && lane !== e.primary) {
      lane.idleTimer = setTimeout(() => {
        if (lane.tunnels === 0 && e.lanes.includes(lane)) {
          lane.conn.close({ closeCode: CloseCode.NORMAL, reason: "idle" });
        }
      }, EXTRA_IDLE_MS);
      Deno.unrefTimer(lane.idleTimer);
    }
    wake(e);
  };
  const heard = () => e.heardAt = performance.now();
  const answered = (ms: number) => {
    heard();
    noteAnswer(e, ms);
  };
  // Never waiting for QUIC's stream credit: our count frees a slot when a tunnel ends, the
  // node's credit follows later, and a wait for it has no bound (a full-suite run had 3 of
  // 2,000 held tunnels hang, most likely there). Out of credit, the lane counts as full
  // until one of its tunnels ends.
  return lane.conn.createBidirectionalStream().then(
    (stream): TunnelSlot => ({ stream, conn: lane.conn, release, heard, answered }),
    async (err) => {
      release();
      if ((await closeState(lane.conn)).closed) throw err;
      lane.starved = true;
      return undefined;
    },
  );
}

/** A stream for a tunnel: a free slot where there is one (tunnel_slots.ts decides where),
 * else another connection, else a wait for a slot to free. */
async function tunnelStream(
  pool: Pool,
  identity: LocalIdentity,
  node: string,
  signal?: AbortSignal,
): Promise<TunnelSlot> {
  const e = entryFor(pool, identity, node);
  e.lastUsed = Date.now();
  for (;;) {
    if (signal?.aborted) throw new PeerError("unreachable", `gave up waiting for ${node}`);
    if (!e.primary) await connectPrimary(pool, e);
    const loads = e.lanes.map((l) =>
      l.starved || l.retired ? TUNNEL_STREAMS_PER_CONNECTION : l.tunnels
    );
    const place = placeTunnel(loads, e.extraPending ? 1 : 0);
    if (place.kind === "take") {
      const slot = await take(e, e.lanes[place.connection]);
      if (slot) return slot;
      continue;
    }
    if (place.kind === "open") {
      // When another connection cannot be made (a busy node, a slow handshake), the tunnel
      // waits for a slot on the ones there are rather than fail.
      const lane = await connectExtra(pool, e).catch(() => undefined);
      if (lane && lane.tunnels < TUNNEL_STREAMS_PER_CONNECTION) {
        const slot = await take(e, lane);
        if (slot) return slot;
      }
      if (lane) continue;
    }
    await waitForSlot(e, signal);
  }
}

/** Until a slot frees (wake) or the caller gives up (signal). */
function waitForSlot(e: Entry, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const wakeUp = () => {
      e.waiting = e.waiting.filter((w) => w !== wakeUp);
      signal?.removeEventListener("abort", wakeUp);
      resolve();
    };
    e.waiting.push(wakeUp);
    signal?.addEventListener("abort", wakeUp, { once: true });
  });
}

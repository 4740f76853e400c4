/**
 * The node side of florete/1: accepts QUIC connections, authenticates the client on the
 * first stream (auth.ts), then turns every further stream into a TCP connection to the
 * service it names, if the verified principal is allowed.
 */
import {
  type Authenticated,
  AuthError,
  encodeAuthReply,
  MAX_AUTH_MESSAGE_BYTES,
  NonceCache,
  verifyAuthMessage,
} from "../lib/auth.ts";
import { frame, MAX_FRAME_BYTES, truncateUtf8 } from "../lib/binary.ts";
import { formatHostPort, type HostPort, isAdmin } from "../lib/cluster.ts";
import { principalString } from "../lib/identity.ts";
import type { EventLog } from "../lib/log.ts";
import { authorize, DENIALS, isAllowed, serviceLabel } from "../lib/policy.ts";
import {
  ALPN,
  AUTH_TIMEOUT_MS,
  CloseCode,
  IDLE_TIMEOUT_MS,
  KEEP_ALIVE_MS,
  MAX_STREAMS_PER_CONNECTION,
} from "../lib/protocol.ts";
import { closeQuietly, relay, tcpDuplex } from "../lib/relay.ts";
import { StreamBuffer } from "../lib/stream_buffer.ts";
import {
  decodeStreamRequest,
  encodeTunnelReply,
  MAX_TUNNEL_REQUEST_BYTES,
  type TunnelStatus,
  TunnelStatus as Status,
  tunnelStatusName,
} from "../lib/tunnel_header.ts";
import type { AgentMetrics } from "./agent_metrics.ts";
import type { FlowWatch } from "./flow_watch.ts";
import type { Limits } from "./config.ts";
import { Counter, RateLimiter, WindowCount } from "../lib/rate_limit.ts";
import { collectClosedConnectionsSoon } from "../lib/memory.ts";
import type { Runtime } from "./runtime.ts";
import { dialTarget } from "./target.ts";
import { openQuicEndpoint } from "./quic_endpoint.ts";
import { congestionControlOption } from "../lib/congestion.ts";

/** One authenticated connection and its open tunnels, so a reload can cut what it no
 * longer allows. */
export interface PeerConnection {
  conn: Deno.QuicConn;
  peer: Authenticated;
  remote: string;
  tunnels: Map<AbortController, string>; // → service
}

export interface QuicServer {
  addr: Deno.NetAddr;
  connections: Set<PeerConnection>;
  /** Re-checks live connections and tunnels after the cluster map changed. */
  enforce(): void;
  authFailuresLastHour(): number;
  close(): void;
}

/** Unauthenticated connections held at once; past it new handshakes are refused outright.
 * Each costs ~60 KB until its 5 s auth limit (lib/memory.ts), so this bounds a distributed
 * flood to ~15 MB; 256 is far above the handful of peers that reconnect together. */
const MAX_PENDING_HANDSHAKES = 256;

/** An authenticated peer must send a stream's header within this. */
const STREAM_HEADER_TIMEOUT_MS = 10_000;

/** How often live connections are re-checked for certificate expiry. */
const ENFORCE_INTERVAL_MS = 30_000;

/** How long a refused client gets to read why before the connection is closed. */
const AUTH_REPLY_GRACE_MS = 200;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function startQuicServer(
  rt: Runtime,
  listen: HostPort,
  log: EventLog,
  metrics: AgentMetrics,
  /** What the node tells the operator (florctl status, enroll/deploy verification). */
  status: () => Record<string, unknown>,
  flows: FlowWatch,
): QuicServer {
  const node = rt.node!;
  const nonces = new NonceCache();
  const connections = new Set<PeerConnection>();
  const transport = rt.loaded.config.transport;
  const endpoint = openQuicEndpoint(listen, "server", transport.udp_buffer_bytes, log, metrics);
  const listener = endpoint.listen({
    congestionControl: congestionControlOption(transport.congestion),
    alpnProtocols: [ALPN],
    cert: node.certPem,
    key: node.keyPem,
    keepAliveInterval: KEEP_ALIVE_MS,
    maxIdleTimeout: IDLE_TIMEOUT_MS,
    maxConcurrentBidirectionalStreams: MAX_STREAMS_PER_CONNECTION,
  });

  // Per-source budgets. Rebuilt when a reload changes the limits.
  let connLimiter: RateLimiter | undefined;
  let connLimiterFor: Limits | undefined;
  function limiterFor(limits: Limits): RateLimiter {
    if (!connLimiter || connLimiterFor !== limits) {
      connLimiter = new RateLimiter({
        ratePerSecond: limits.connections_per_source_per_s,
        burst: limits.connections_per_source_burst,
      });
      connLimiterFor = limits;
    }
    return connLimiter;
  }
  /** At most a few lines per second about one source: an attacker cannot fill the disk. */
  const logLimiter = new RateLimiter({ ratePerSecond: 1, burst: 5 });
  function logFromSource(
    source: string,
    level: "info" | "warn",
    event: string,
    fields: Record<string, unknown>,
  ) {
    if (!logLimiter.take(source, Date.now())) return;
    const suppressed = logLimiter.drainRefused(source);
    log[level](event, suppressed ? { ...fields, suppressed } : fields);
  }
  const tunnelsByPrincipal = new Counter();
  const authFailures = new WindowCount(3_600_000);

  async function acceptLoop() {
    try {
      for await (const incoming of listener) {
        // Each handshake in its own task: awaiting one here would stall every later one.
        handleIncoming(incoming);
      }
    } catch (e) {
      log.debug("quic.listener_stopped", { error: String(e) });
    }
  }

  /** Connections between QUIC accept and the end of client authentication. */
  let pending = 0;

  function handleIncoming(incoming: Deno.QuicIncoming) {
    // Deno 2.9.6: reading any property of a QuicIncoming (remoteAddr, localIp,
    // remoteAddressValidated) invalidates it and accept() then fails, so the peer's address
    // is taken from the connection once accepted. docs/security.md notes what this costs.
    if (pending >= MAX_PENDING_HANDSHAKES) {
      // Many sources at once (per-source limits cannot see them before accept): refusing
      // costs one packet and no state, and authenticated peers are not affected.
      try {
        incoming.refuse();
      } catch { /* gone already */ }
      metrics.rateLimited.inc({ what: "handshake_overload" });
      logFromSource("*", "warn", "quic.overloaded", { pending });
      return;
    }
    let accepted: Promise<Deno.QuicConn>;
    try {
      accepted = incoming.accept<false>();
    } catch (e) {
      log.debug("quic.accept_failed", { error: String(e) });
      return;
    }
    pending++;
    let counted = true;
    const settled = () => {
      if (counted) pending--;
      counted = false;
    };
    accepted.then((conn) => {
      conn.closed.catch(() => {}).finally(collectClosedConnectionsSoon);
      const source = conn.remoteAddr.hostname;
      const remote = formatHostPort({ host: source, port: conn.remoteAddr.port });
      const limits = rt.loaded.config.limits;
      if (limiterFor(limits).take(source, Date.now())) {
        return serveConnection(conn, remote, settled);
      }
      settled();
      // Over its budget: dropped before the auth message costs us a signature check.
      metrics.rateLimited.inc({ what: "connection" });
      conn.close({ closeCode: CloseCode.RATE_LIMITED, reason: "too many connections; slow down" });
      collectClosedConnectionsSoon();
      logFromSource(source, "warn", "quic.rate_limited", { remote });
    }).catch((e) => {
      settled();
      // A refused or failed handshake rejects here too; it must not become unhandled.
      metrics.authFailures.inc({ reason: "handshake" });
      log.info("quic.handshake_failed", { error: String(e) });
    });
  }

  /** Reads and verifies the auth stream; undefined means the connection was refused. */
  async function authenticate(conn: Deno.QuicConn, remote: string) {
    let stream: Deno.QuicBidirectionalStream | undefined;
    const streams = conn.incomingBidirectionalStreams.getReader();
    const verify = (async () => {
      const first = await streams.read();
      if (first.done) throw new AuthError("malformed", "connection closed before auth");
      stream = first.value;
      const body = await new StreamBuffer(stream.readable).readFrame(MAX_AUTH_MESSAGE_BYTES);
      const view = rt.view;
      return await verifyAuthMessage(body, {
        ca: rt.ca,
        cluster: view.cluster.cluster,
        selfId: node.spiffe,
        now: Date.now(),
        revoked: view.revoked,
        nonces,
      });
    })();
    verify.catch(() => {}); // may lose the race below and reject later
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), AUTH_TIMEOUT_MS);
    });
    try {
      const result = await Promise.race([verify, deadline]);
      if (result === "timeout") {
        await deny(conn, remote, "timeout", `no auth message in ${AUTH_TIMEOUT_MS} ms`);
        return undefined;
      }
      const w = stream!.writable.getWriter();
      await w.write(frame(encodeAuthReply(true)));
      await w.close();
      streams.releaseLock();
      return result;
    } catch (e) {
      const reason = e instanceof AuthError ? e.pkiCode ?? e.code : "error";
      await deny(conn, remote, reason, (e as Error).message, stream);
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Tells the client why (on the auth stream, if there is one), then closes with a code
   * that says the same. The short grace lets the reply arrive before the close frame. */
  async function deny(
    conn: Deno.QuicConn,
    remote: string,
    reason: string,
    detail: string,
    stream?: Deno.QuicBidirectionalStream,
  ) {
    metrics.authFailures.inc({ reason });
    authFailures.add(Date.now());
    logFromSource(conn.remoteAddr.hostname, "warn", "auth.denied", {
      remote,
      reason,
      detail: truncateUtf8(detail, 300),
    });
    try {
      if (stream) {
        const w = stream.writable.getWriter();
        await w.write(frame(encodeAuthReply(false, detail))).catch(() => {});
        await w.close().catch(() => {});
        await Promise.race([conn.closed.catch(() => {}), sleep(AUTH_REPLY_GRACE_MS)]);
      }
    } finally {
      // Whatever happened above, a refused peer never keeps its connection.
      conn.close({
        closeCode: reason === "timeout" ? CloseCode.AUTH_TIMEOUT : CloseCode.AUTH_DENIED,
        reason: `auth failed: ${reason}`,
      });
    }
  }

  async function serveConnection(conn: Deno.QuicConn, remote: string, authDone: () => void) {
    let peer;
    try {
      peer = await authenticate(conn, remote);
    } finally {
      authDone();
    }
    if (!peer) return;
    const pc: PeerConnection = { conn, peer, remote, tunnels: new Map() };
    connections.add(pc);
    metrics.quicConnections.add({ side: "server" }, 1);
    const principal = principalString(peer.principal);
    log.info("peer.authenticated", { remote, principal, serial: peer.serial });
    conn.closed.catch(() => {}).finally(() => {
      connections.delete(pc);
      metrics.quicConnections.add({ side: "server" }, -1);
      log.info("peer.disconnected", { remote, principal });
    });
    try {
      for await (const stream of conn.incomingBidirectionalStreams) {
        serveTunnel(pc, stream).catch((e) =>
          log.warn("tunnel.error", { principal, error: String(e) })
        );
      }
    } catch {
      // connection closed: its tunnels end with it
    }
  }

  async function serveTunnel(pc: PeerConnection, stream: Deno.QuicBidirectionalStream) {
    const principal = principalString(pc.peer.principal);
    const buf = new StreamBuffer(stream.readable);
    let request;
    // A stream that never sends its header would hold a stream slot forever.
    const header = setTimeout(() => buf.cancel(), STREAM_HEADER_TIMEOUT_MS);
    try {
      request = decodeStreamRequest(await buf.readFrame(MAX_TUNNEL_REQUEST_BYTES));
    } catch (e) {
      log.warn("tunnel.bad_header", { principal, error: (e as Error).message });
      await buf.cancel();
      await stream.writable.abort().catch(() => {});
      return;
    } finally {
      clearTimeout(header);
    }
    const reply = async (status: TunnelStatus, message: string) => {
      const w = stream.writable.getWriter();
      await w.write(frame(encodeTunnelReply({ status, message })));
      if (status === Status.OK) {
        w.releaseLock();
      } else {
        await w.close().catch(() => {});
        await buf.cancel();
      }
    };
    if (request.kind === "ping") return reply(Status.OK, "");
    if (request.kind === "map") {
      // Any authenticated peer may have it: it is in every bundle already, and the CA's
      // signature, not this node, is what makes a client trust it.
      const { text, signature } = rt.view;
      const body = new TextEncoder().encode(JSON.stringify({ map: text, signature }));
      if (!signature || body.length > MAX_FRAME_BYTES) {
        return reply(
          Status.INTERNAL,
          signature ? "cluster map too large to serve" : "no signed map",
        );
      }
      await reply(Status.OK, "");
      const w = stream.writable.getWriter();
      await w.write(frame(body));
      await w.close();
      await buf.cancel();
      return;
    }
    if (request.kind === "status") {
      if (!isAdmin(rt.view.cluster, pc.peer.principal)) {
        log.warn("access.denied", { principal, request: "status" });
        return reply(Status.NOT_ALLOWED, "status is for the operator (role: admin)");
      }
      await reply(Status.OK, "");
      const w = stream.writable.getWriter();
      const json = new TextEncoder().encode(JSON.stringify(status()));
      await w.write(frame(json.subarray(0, MAX_FRAME_BYTES)));
      await w.close();
      await buf.cancel();
      return;
    }
    const { service, port } = request;
    const decision = authorize(rt.view.cluster, pc.peer.principal, service, port);
    if (!decision.allow) {
      metrics.accessDenied.inc({ side: "server", service: serviceLabel(rt.view.cluster, service) });
      log.warn("access.denied", { principal, service, port, reason: decision.reason });
      return reply(DENIALS[decision.reason].status, decision.message);
    }
    if (decision.node !== rt.loaded.config.node) {
      metrics.tunnelsFailed.inc({ side: "server", reason: "wrong_node" });
      return reply(
        Status.UNKNOWN_SERVICE,
        `${service} is hosted on ${decision.node}, not on ${rt.loaded.config.node}`,
      );
    }
    const limits = rt.loaded.config.limits;
    if (
      tunnelsByPrincipal.total >= limits.max_tunnels ||
      tunnelsByPrincipal.get(principal) >= limits.max_tunnels_per_principal
    ) {
      metrics.tunnelsFailed.inc({ side: "server", reason: "capacity" });
      log.warn("tunnel.over_capacity", {
        principal,
        service,
        open: tunnelsByPrincipal.total,
        open_for_principal: tunnelsByPrincipal.get(principal),
      });
      return reply(Status.OVER_CAPACITY, "too many open tunnels; try again later");
    }
    tunnelsByPrincipal.add(principal, 1);
    try {
      await connectAndRelay(pc, stream, buf, principal, service, decision.target, reply);
    } finally {
      tunnelsByPrincipal.add(principal, -1);
    }
  }

  async function connectAndRelay(
    pc: PeerConnection,
    stream: Deno.QuicBidirectionalStream,
    buf: StreamBuffer,
    principal: string,
    service: string,
    target: HostPort,
    reply: (status: TunnelStatus, message: string) => Promise<void>,
  ) {
    const dial = await dialTarget(target);
    if (!dial.ok) {
      metrics.tunnelsFailed.inc({ side: "server", reason: tunnelStatusName(dial.status) });
      log.warn("tunnel.target_failed", { principal, service, detail: dial.message });
      return reply(dial.status, dial.message);
    }
    await reply(Status.OK, "");
    const stop = new AbortController();
    pc.tunnels.set(stop, service);
    metrics.tunnelsOpened.inc({ side: "server", service });
    metrics.tunnelsOpen.add({ side: "server" }, 1);
    log.info("tunnel.open", {
      side: "server",
      principal,
      service,
      target: formatHostPort(target),
    });
    const started = performance.now();
    const tcp = tcpDuplex(dial.conn);
    const untrack = flows.track(tcp, { side: "server", principal, service });
    try {
      const r = await relay(tcp, {
        readable: stream.readable,
        writable: stream.writable,
      }, {
        streamLeftover: buf.release(),
        signal: stop.signal,
        onBytes: (dir, n) =>
          metrics.bytes.inc({ side: "server", direction: dir === "sent" ? "in" : "out" }, n),
      });
      log.info("tunnel.close", {
        side: "server",
        principal,
        service,
        bytes_to_target: r.received,
        bytes_from_target: r.sent,
        ms: Math.round(performance.now() - started),
        ...(r.error ? { error: String(r.error) } : {}),
      });
    } finally {
      untrack();
      pc.tunnels.delete(stop);
      metrics.tunnelsOpen.add({ side: "server" }, -1);
      closeQuietly(dial.conn);
    }
  }

  function enforce() {
    const { cluster, revoked } = rt.view;
    for (const pc of connections) {
      const principal = principalString(pc.peer.principal);
      if (revoked.has(pc.peer.serial)) {
        log.warn("peer.revoked", { principal, serial: pc.peer.serial });
        pc.conn.close({ closeCode: CloseCode.REVOKED, reason: "certificate revoked" });
        continue;
      }
      if (Date.now() > pc.peer.notAfter.getTime()) {
        log.warn("peer.expired", { principal, serial: pc.peer.serial });
        pc.conn.close({ closeCode: CloseCode.REVOKED, reason: "certificate expired" });
        continue;
      }
      for (const [stop, service] of pc.tunnels) {
        if (!isAllowed(cluster, pc.peer.principal, service)) {
          log.warn("policy.revoked", { principal, service });
          stop.abort(new Error("no longer allowed"));
        }
      }
    }
  }

  acceptLoop();
  // Connections outlive their certificates otherwise: keep-alives never force a new auth.
  const expiry = setInterval(enforce, ENFORCE_INTERVAL_MS);
  return {
    addr: endpoint.addr,
    connections,
    enforce,
    authFailuresLastHour: () => authFailures.total(Date.now()),
    close() {
      clearInterval(expiry);
      listener.stop();
      for (const pc of connections) {
        pc.conn.close({ closeCode: CloseCode.SHUTDOWN, reason: "agent shutting down" });
      }
      endpoint.close({ closeCode: CloseCode.SHUTDOWN, reason: "agent shutting down" });
    },
  };
}

/**
 * The node side of florete/1: accepts QUIC connections, authenticates the client on the
 * first stream (auth.ts), then turns every further stream into a TCP connection to the
 * service it names, if the verified principal is allowed.
 *
 * A thin shell: what to accept, refuse, reply and log is decided in agent/auth_gate.ts
 * (before auth) and agent/stream_gate.ts (each stream after it); this file moves bytes and
 * applies those decisions.
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
import { formatHostPort, type HostPort } from "../lib/host_port.ts";
import { principalString } from "../lib/identity.ts";
import type { EventLog } from "../lib/log.ts";
import { isAllowed } from "../lib/policy.ts";
import {
  ALPN,
  AUTH_TIMEOUT_MS,
  CloseCode,
  IDLE_TIMEOUT_MS,
  KEEP_ALIVE_MS,
  MAX_STREAMS_PER_CONNECTION,
} from "../lib/protocol.ts";
import { closeQuietly, relay, tcpDuplex } from "../lib/relay.ts";
import { StreamBuffer, StreamClosedError } from "../lib/stream_buffer.ts";
import { closeState } from "../lib/quic_client.ts";
import {
  decodeStreamRequest,
  encodeTunnelReply,
  MAX_TUNNEL_REQUEST_BYTES,
  type StreamRequest,
  type TunnelStatus,
  TunnelStatus as Status,
  tunnelStatusName,
} from "../lib/tunnel_header.ts";
import type { AgentMetrics } from "./agent_metrics.ts";
import { admitPrincipal, type AuthPhase, PendingAuth, streamRole } from "./auth_gate.ts";
import type { FlowWatch } from "./flow_watch.ts";
import type { Limits } from "./config.ts";
import { Counter, RateLimiter, WindowCount } from "../lib/rate_limit.ts";
import { collectClosedConnectionsSoon } from "../lib/memory.ts";
import type { LocalIdentity, Runtime, RuntimeSource } from "./runtime.ts";
import type { ServerCounts } from "./status_document.ts";
import type { StatusBody } from "../lib/request_bodies.ts";
import { decideStream, type StreamDecision } from "./stream_gate.ts";
import { dialTarget } from "./target.ts";
import { openQuicEndpoint } from "./quic_endpoint.ts";
import { congestionControlOption } from "../lib/congestion.ts";
import { type PhaseTrace, traceFields } from "../lib/phase_trace.ts";
import { startTrace } from "./phase_tracing.ts";

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
  authFailuresLastHour(): number;
  close(): void;
}

/** An authenticated peer must send a stream's header within this. */
const STREAM_HEADER_TIMEOUT_MS = 10_000;

/** How often live connections are re-checked for certificate expiry. */
const ENFORCE_INTERVAL_MS = 30_000;

/** The reason of a client that closed its connection or auth stream before its auth message
 * was complete: not a refusal by the node. */
const CLIENT_CLOSED = "client_closed";

/** How long a failed read during auth waits to see the connection's close (a vanished
 * client's idle timeout surfaces on the stream first, its close a moment later). */
const CLOSE_SETTLE_MS = 200;

/** How long a refused client gets to read why before the connection is closed. */
const AUTH_REPLY_GRACE_MS = 200;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What every part of the node server shares. */
interface Ctx {
  /** Replaced by this server's onChange subscription (startQuicServer). */
  rt: Runtime;
  node: LocalIdentity;
  log: EventLog;
  metrics: AgentMetrics;
  /** What the node tells the operator (florctl status, enroll/deploy verification). */
  status: () => StatusBody;
  flows: FlowWatch;
  nonces: NonceCache;
  connections: Set<PeerConnection>;
  pending: PendingAuth;
  tunnels: Counter;
  authFailures: WindowCount;
  /** At most a few lines per second about one source: an attacker cannot fill the disk. */
  logFromSource(
    source: string,
    level: "info" | "warn",
    event: string,
    fields: Record<string, unknown>,
  ): void;
}

const budgetOf = (l: Limits) => ({
  ratePerSecond: l.connections_per_source_per_s,
  burst: l.connections_per_source_burst,
});

export function startQuicServer(
  source: RuntimeSource,
  listen: HostPort,
  log: EventLog,
  metrics: AgentMetrics,
  /** The agent's status document, given this server's own counts. */
  status: (server: ServerCounts) => StatusBody,
  flows: FlowWatch,
): QuicServer {
  const rt = source.current();
  // Kept across reloads: the listener is bound to this certificate until a restart.
  const node = rt.node!;
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
    // florete/1 has no unidirectional streams; Deno's default of 100 let any peer, even
    // before auth, park a receive window of data in each (measured: +30 MiB from 4 peers).
    maxConcurrentUnidirectionalStreams: 0,
  });
  const logLimiter = new RateLimiter({ ratePerSecond: 1, burst: 5 });
  const ctx: Ctx = {
    rt,
    node,
    log,
    metrics,
    status: () =>
      status({
        connections: ctx.connections.size,
        auth_failures_last_hour: ctx.authFailures.total(Date.now()),
      }),
    flows,
    nonces: new NonceCache(),
    connections: new Set(),
    pending: new PendingAuth(budgetOf(rt.loaded.config.limits)),
    tunnels: new Counter(),
    authFailures: new WindowCount(3_600_000),
    logFromSource(source, level, event, fields) {
      if (!logLimiter.take(source, Date.now())) return;
      const suppressed = logLimiter.drainRefused(source);
      log[level](event, suppressed ? { ...fields, suppressed } : fields);
    },
  };
  // A reload: new limits and map for what comes next, and live connections and tunnels
  // re-checked against them at once.
  const unsubscribe = source.onChange("quic_server", (next) => {
    ctx.rt = next;
    ctx.pending.setBudget(budgetOf(next.loaded.config.limits));
    enforceConnections(ctx);
  });
  acceptLoop(ctx, listener);
  // Connections outlive their certificates otherwise: keep-alives never force a new auth.
  const expiry = setInterval(() => enforceConnections(ctx), ENFORCE_INTERVAL_MS);
  return {
    addr: endpoint.addr,
    connections: ctx.connections,
    authFailuresLastHour: () => ctx.authFailures.total(Date.now()),
    close() {
      unsubscribe();
      clearInterval(expiry);
      listener.stop();
      for (const pc of ctx.connections) {
        pc.conn.close({ closeCode: CloseCode.SHUTDOWN, reason: "agent shutting down" });
      }
      endpoint.close({ closeCode: CloseCode.SHUTDOWN, reason: "agent shutting down" });
    },
  };
}

async function acceptLoop(ctx: Ctx, listener: Deno.QuicListener) {
  try {
    for await (const incoming of listener) {
      // Each handshake in its own task: awaiting one here would stall every later one.
      handleIncoming(ctx, incoming);
    }
  } catch (e) {
    ctx.log.debug("quic.listener_stopped", { error: String(e) });
  }
}

function handleIncoming(ctx: Ctx, incoming: Deno.QuicIncoming) {
  // Deno 2.9.6: reading any property of a QuicIncoming (remoteAddr, localIp,
  // remoteAddressValidated) invalidates it and accept() then fails, so the peer's address
  // is taken from the connection once accepted. docs/security.md notes what this costs.
  if (!ctx.pending.beginHandshake()) {
    // Many sources at once (per-source limits cannot see them before accept): refusing
    // costs one packet and no state, and authenticated peers are not affected.
    try {
      incoming.refuse();
    } catch { /* gone already */ }
    ctx.metrics.rateLimited.inc({ what: "handshake_overload" });
    ctx.logFromSource("*", "warn", "quic.overloaded", { pending: ctx.pending.pending });
    return;
  }
  let accepted: Promise<Deno.QuicConn>;
  try {
    accepted = incoming.accept<false>();
  } catch (e) {
    ctx.pending.handshakeFailed();
    ctx.log.debug("quic.accept_failed", { error: String(e) });
    return;
  }
  accepted.then((conn) => {
    conn.closed.catch(() => {}).finally(collectClosedConnectionsSoon);
    const source = conn.remoteAddr.hostname;
    const remote = formatHostPort({ host: source, port: conn.remoteAddr.port });
    const admit = ctx.pending.admitSource(source, Date.now());
    if (admit.admit) return serveConnection(ctx, conn, source, remote);
    // Over its budget: dropped before the auth message costs us a signature check.
    ctx.metrics.rateLimited.inc({ what: admit.what });
    conn.close({ closeCode: CloseCode.RATE_LIMITED, reason: admit.reason });
    collectClosedConnectionsSoon();
    ctx.logFromSource(source, "warn", "quic.rate_limited", { remote, what: admit.what });
  }, (e) => {
    ctx.pending.handshakeFailed();
    // A refused or failed handshake rejects here too; it must not become unhandled.
    ctx.metrics.authFailures.inc({ reason: "handshake" });
    ctx.log.info("quic.handshake_failed", { error: String(e) });
  });
}

type StreamRead = ReadableStreamReadResult<Deno.QuicBidirectionalStream>;

/** Why authentication failed: a reason label (metric, event) and a detail for the peer. */
class Refusal extends Error {
  constructor(readonly reason: string, message: string, readonly code: number) {
    super(message);
  }
}

async function serveConnection(ctx: Ctx, conn: Deno.QuicConn, source: string, remote: string) {
  const streams = conn.incomingBidirectionalStreams.getReader();
  let auth;
  try {
    auth = await authenticate(ctx, conn, streams, remote);
  } finally {
    ctx.pending.settled(source);
  }
  if (!auth) return;
  const pc: PeerConnection = { conn, peer: auth.peer, remote, tunnels: new Map() };
  ctx.connections.add(pc);
  ctx.metrics.quicConnections.add({ side: "server" }, 1);
  const principal = principalString(auth.peer.principal);
  ctx.log.info("peer.authenticated", { remote, principal, serial: auth.peer.serial });
  conn.closed.catch(() => {}).finally(() => {
    ctx.connections.delete(pc);
    ctx.metrics.quicConnections.add({ side: "server" }, -1);
    ctx.log.info("peer.disconnected", { remote, principal });
  });
  try {
    // The read started during auth may already hold the first tunnel stream.
    for (let next = await auth.next; !next.done; next = await streams.read()) {
      serveStream(ctx, pc, next.value).catch((e) =>
        ctx.log.warn("tunnel.error", { principal, error: String(e) })
      );
    }
  } catch {
    // connection closed: its tunnels end with it
  }
}

/**
 * Reads and verifies the auth stream while watching for any other stream (a violation,
 * auth_gate.ts) and the deadline. Undefined means the connection was refused; otherwise
 * the peer and the pending read of the next stream.
 */
async function authenticate(
  ctx: Ctx,
  conn: Deno.QuicConn,
  streams: ReadableStreamDefaultReader<Deno.QuicBidirectionalStream>,
  remote: string,
): Promise<{ peer: Authenticated; next: Promise<StreamRead> } | undefined> {
  let stream: Deno.QuicBidirectionalStream | undefined;
  let next: Promise<StreamRead> | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Refusal(
            "timeout",
            `no auth message in ${AUTH_TIMEOUT_MS} ms`,
            CloseCode.AUTH_TIMEOUT,
          ),
        ),
      AUTH_TIMEOUT_MS,
    );
  });
  let phase: AuthPhase = "awaiting_auth_stream";
  const verify = (async () => {
    const first = await streams.read();
    if (first.done) throw new Refusal(CLIENT_CLOSED, "closed before auth", CloseCode.NORMAL);
    stream = first.value; // streamRole(phase) is "auth"
    phase = "authenticating";
    next = streams.read();
    const violation = next.then((r): Promise<never> => {
      if (r.done || streamRole(phase) !== "violation") return new Promise(() => {});
      r.value.readable.cancel().catch(() => {});
      throw new Refusal(
        "stream_before_auth",
        "a stream was opened before authentication succeeded",
        CloseCode.PROTOCOL,
      );
    });
    violation.catch(() => {});
    const peer = await Promise.race([verifyStream(ctx, stream), violation]);
    phase = "authenticated"; // before the reply: only then may the client open tunnels
    return peer;
  })();
  verify.catch(() => {}); // may lose the race below and reject later
  try {
    const peer = await Promise.race([verify, deadline]);
    const w = stream!.writable.getWriter();
    await w.write(frame(encodeAuthReply(true)));
    await w.close();
    return { peer, next: next! };
  } catch (e) {
    // A client that hung up, or went silent until the idle timeout, was not refused.
    const gone = e instanceof StreamClosedError ||
      (!(e instanceof Refusal) && !(e instanceof AuthError) &&
        (await closeState(conn, CLOSE_SETTLE_MS)).closed);
    const refusal = e instanceof Refusal
      ? e
      : gone
      ? new Refusal(CLIENT_CLOSED, `closed during auth: ${(e as Error).message}`, CloseCode.NORMAL)
      : new Refusal(
        e instanceof AuthError ? e.pkiCode ?? e.code : "error",
        (e as Error).message,
        CloseCode.AUTH_DENIED,
      );
    await deny(ctx, conn, remote, refusal, stream);
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

/** The auth message on the first stream: certificate, signature, freshness, nonce, and a
 * principal the cluster map still lists. */
async function verifyStream(ctx: Ctx, stream: Deno.QuicBidirectionalStream) {
  const body = await new StreamBuffer(stream.readable).readFrame(MAX_AUTH_MESSAGE_BYTES);
  const view = ctx.rt.view;
  const peer = await verifyAuthMessage(body, {
    ca: ctx.rt.ca,
    cluster: view.cluster.cluster,
    selfId: ctx.node.spiffe,
    now: Date.now(),
    revoked: view.revoked,
    nonces: ctx.nonces,
  });
  const admitted = admitPrincipal(ctx.rt.view.cluster, peer.principal);
  if (!admitted.ok) throw new Refusal(admitted.reason, admitted.message, CloseCode.AUTH_DENIED);
  return peer;
}

/** Tells the client why (on the auth stream, if there is one), then closes with a code
 * that says the same. The short grace lets the reply arrive before the close frame. */
async function deny(
  ctx: Ctx,
  conn: Deno.QuicConn,
  remote: string,
  refusal: Refusal,
  stream?: Deno.QuicBidirectionalStream,
) {
  const { reason, message: detail } = refusal;
  if (reason === CLIENT_CLOSED) {
    // A client that hung up (its own deadline passed under load, or it shut down) proved
    // nothing wrong: not a warning, not an auth failure (metric, alert, doctor). A flood of
    // such connections is what the handshake and per-source limits are for.
    ctx.logFromSource(conn.remoteAddr.hostname, "info", "auth.abandoned", {
      remote,
      reason,
      detail,
    });
    conn.close({ closeCode: refusal.code, reason: `auth abandoned: ${detail}` });
    collectClosedConnectionsSoon();
    return;
  }
  ctx.metrics.authFailures.inc({ reason });
  ctx.authFailures.add(Date.now());
  ctx.logFromSource(conn.remoteAddr.hostname, "warn", "auth.denied", {
    remote,
    reason,
    detail: truncateUtf8(detail, 300),
  });
  try {
    if (stream && refusal.code === CloseCode.AUTH_DENIED) {
      const w = stream.writable.getWriter();
      await w.write(frame(encodeAuthReply(false, detail))).catch(() => {});
      await w.close().catch(() => {});
      await Promise.race([conn.closed.catch(() => {}), sleep(AUTH_REPLY_GRACE_MS)]);
    }
  } finally {
    // Whatever happened above, a refused peer never keeps its connection.
    conn.close({ closeCode: refusal.code, reason: `auth failed: ${reason}` });
    collectClosedConnectionsSoon();
  }
}

/** Reads a stream's header, asks the gate, and applies its decision. */
async function serveStream(ctx: Ctx, pc: PeerConnection, stream: Deno.QuicBidirectionalStream) {
  const trace = startTrace();
  trace.mark("stream_accepted");
  const principal = principalString(pc.peer.principal);
  const buf = new StreamBuffer(stream.readable);
  let request: StreamRequest;
  // A stream that never sends its header would hold a stream slot forever.
  const header = setTimeout(() => buf.cancel(), STREAM_HEADER_TIMEOUT_MS);
  try {
    request = decodeStreamRequest(await buf.readFrame(MAX_TUNNEL_REQUEST_BYTES));
    trace.mark("header_read");
  } catch (e) {
    ctx.log.warn("tunnel.bad_header", { principal, error: (e as Error).message });
    await buf.cancel();
    await stream.writable.abort().catch(() => {});
    return;
  } finally {
    clearTimeout(header);
  }
  const config = ctx.rt.loaded.config;
  const decision = decideStream({
    request,
    principal: pc.peer.principal,
    view: ctx.rt.view,
    node: config.node!,
    limits: config.limits,
    open: { total: ctx.tunnels.total, forPrincipal: ctx.tunnels.get(principal) },
  });
  if (decision.action === "reply") return await applyReply(ctx, stream, buf, decision);
  trace.mark("gate_decided");
  ctx.tunnels.add(principal, 1);
  try {
    await connectAndRelay(ctx, pc, stream, buf, decision.service, decision.target, trace);
  } finally {
    ctx.tunnels.add(principal, -1);
  }
}

/** Sends a reply frame; OK keeps the stream open for what follows (and returns the writer,
 * still locked, for the relay: lib/relay.ts Duplex), others end it. */
async function reply(
  stream: Deno.QuicBidirectionalStream,
  buf: StreamBuffer,
  status: TunnelStatus,
  message: string,
): Promise<WritableStreamDefaultWriter<Uint8Array> | undefined> {
  const w = stream.writable.getWriter();
  await w.write(frame(encodeTunnelReply({ status, message })));
  if (status === Status.OK) return w;
  await w.close().catch(() => {});
  await buf.cancel();
}

async function applyReply(
  ctx: Ctx,
  stream: Deno.QuicBidirectionalStream,
  buf: StreamBuffer,
  d: Extract<StreamDecision, { action: "reply" }>,
) {
  if (d.event) ctx.log[d.event.level](d.event.name, d.event.fields);
  if (d.count?.metric === "accessDenied") {
    ctx.metrics.accessDenied.inc({ side: "server", service: d.count.service });
  } else if (d.count?.metric === "tunnelsFailed") {
    ctx.metrics.tunnelsFailed.inc({ side: "server", reason: d.count.reason });
  }
  const w = await reply(stream, buf, d.status, d.message);
  if (!w || d.body === undefined) return;
  const body = d.body === "status"
    ? new TextEncoder().encode(JSON.stringify(ctx.status())).subarray(0, MAX_FRAME_BYTES)
    : d.body;
  await w.write(frame(body));
  await w.close();
  await buf.cancel();
}

async function connectAndRelay(
  ctx: Ctx,
  pc: PeerConnection,
  stream: Deno.QuicBidirectionalStream,
  buf: StreamBuffer,
  service: string,
  target: HostPort,
  trace: PhaseTrace,
) {
  const { metrics, log } = ctx;
  const principal = principalString(pc.peer.principal);
  const dial = await dialTarget(target);
  trace.mark("target_dialed");
  if (!dial.ok) {
    metrics.tunnelsFailed.inc({ side: "server", reason: tunnelStatusName(dial.status) });
    log.warn("tunnel.target_failed", { principal, service, detail: dial.message });
    await reply(stream, buf, dial.status, dial.message);
    return;
  }
  let writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  try {
    writer = await reply(stream, buf, Status.OK, "");
  } catch (e) {
    // The client stopped listening while we dialled: the target's connection is ours to end.
    closeQuietly(dial.conn);
    throw e;
  }
  trace.mark("replied");
  const stop = new AbortController();
  pc.tunnels.set(stop, service);
  metrics.tunnelsOpened.inc({ side: "server", service });
  metrics.tunnelsOpen.add({ side: "server" }, 1);
  log.info("tunnel.open", { side: "server", principal, service, target: formatHostPort(target) });
  const started = performance.now();
  const tcp = tcpDuplex(dial.conn);
  const untrack = ctx.flows.track(tcp, { side: "server", principal, service });
  let relayed = false;
  try {
    const { rest, reader } = buf.handOver();
    const { readable, writable } = stream;
    const relaying = relay(tcp, { readable, writable, reader, writer }, {
      streamLeftover: rest,
      signal: stop.signal,
      onBytes: (dir, n) => {
        if (trace.enabled) trace.mark(dir === "sent" ? "first_from_target" : "first_to_target");
        metrics.bytes.inc({ side: "server", direction: dir === "sent" ? "in" : "out" }, n);
      },
    });
    // Deno sends the reply's QUIC packet only once this synchronous run since the write
    // ends (tests/bench/connect_hops.ts "quic arrival"): what it costs shows as replied →
    // relay_ready.
    trace.mark("relay_ready");
    const r = await relaying;
    relayed = true;
    log.info("tunnel.close", {
      side: "server",
      principal,
      service,
      bytes_to_target: r.received,
      bytes_from_target: r.sent,
      ms: Math.round(performance.now() - started),
      ...(r.error ? { error: String(r.error) } : {}),
    });
    if (trace.enabled) log.info("trace.phases", traceFields("server", trace));
  } finally {
    untrack();
    pc.tunnels.delete(stop);
    metrics.tunnelsOpen.add({ side: "server" }, -1);
    // The relay closed it; closing again would throw (and build) a BadResource error.
    if (!relayed) closeQuietly(dial.conn);
  }
}

/** After a reload or on the expiry timer: cut connections whose certificate is revoked or
 * expired or whose principal left the map, and tunnels the policy no longer allows. */
function enforceConnections(ctx: Ctx) {
  const { cluster, revoked } = ctx.rt.view;
  for (const pc of ctx.connections) {
    const principal = principalString(pc.peer.principal);
    if (revoked.has(pc.peer.serial)) {
      ctx.log.warn("peer.revoked", { principal, serial: pc.peer.serial });
      pc.conn.close({ closeCode: CloseCode.REVOKED, reason: "certificate revoked" });
      continue;
    }
    if (Date.now() > pc.peer.notAfter.getTime()) {
      ctx.log.warn("peer.expired", { principal, serial: pc.peer.serial });
      pc.conn.close({ closeCode: CloseCode.REVOKED, reason: "certificate expired" });
      continue;
    }
    if (!admitPrincipal(cluster, pc.peer.principal).ok) {
      ctx.log.warn("peer.removed", { principal, serial: pc.peer.serial });
      pc.conn.close({ closeCode: CloseCode.REVOKED, reason: "principal removed from the map" });
      continue;
    }
    for (const [stop, service] of pc.tunnels) {
      if (!isAllowed(cluster, pc.peer.principal, service)) {
        ctx.log.warn("policy.revoked", { principal, service });
        stop.abort(new Error("no longer allowed"));
      }
    }
  }
}

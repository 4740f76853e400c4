/**
 * The SOCKS5 front door of an agent: local clients name a service (`web.flor:8080`), the
 * agent picks the principal they speak as (default identity, or RFC 1929 credentials),
 * checks the policy early for a fast answer, and carries the connection through a tunnel to
 * the node hosting the service. The node checks again; its answer is authoritative.
 *
 * A thin shell: which connections are served and what a request gets are decided in
 * socks_gate.ts, who speaks in socks_login.ts, the tunnel itself in tunnel_client.ts; this
 * file moves the bytes and applies the decisions (replies, events, metrics).
 */
import { type Cidr, parseCidr } from "../lib/cidr.ts";
import { entryOf } from "../lib/cluster.ts";
import { formatHostPort, type HostPort } from "../lib/host_port.ts";
import type { EventLog } from "../lib/log.ts";
import { Counter, RateLimiter } from "../lib/rate_limit.ts";
import { closeQuietly, tcpDuplex } from "../lib/relay.ts";
import {
  chooseMethod,
  encodeMethodSelection,
  encodeReply,
  encodeSocks4Rejection,
  encodeUserPassStatus,
  MAX_HELLO_BYTES,
  MAX_REQUEST_BYTES,
  MAX_USERPASS_BYTES,
  Method,
  parseHello,
  parseRequest,
  parseUserPass,
  Reply,
  type ReplyCode,
  Socks5Error,
} from "../lib/socks5.ts";
import { type ChunkSource, StreamBuffer } from "../lib/stream_buffer.ts";
import type { PhaseTrace } from "../lib/phase_trace.ts";
import { startTrace } from "./phase_tracing.ts";
import type { AgentMetrics } from "./agent_metrics.ts";
import type { FlowWatch } from "./flow_watch.ts";
import type { PeerPool } from "./peer_pool.ts";
import type { Runtime, RuntimeSource } from "./runtime.ts";
import {
  type Admission,
  admitConnection,
  type ConnectDecision,
  decideConnect,
  type EdgeLimits,
} from "./socks_gate.ts";
import { type Caller, createSocksLogins, type SocksLogins } from "./socks_login.ts";
import {
  abandonTunnel,
  carryTunnel,
  openTunnel,
  type TunnelClientDeps,
  type TunnelCounts,
} from "./tunnel_client.ts";

/** A client must finish greeting, auth and request within this: an idle half-open client
 * would otherwise hold a socket forever. */
export const SOCKS_HANDSHAKE_TIMEOUT_MS = 10_000;

export interface SocksServer {
  addr: Deno.NetAddr;
  close(): void;
}

/** A refusal by the gate, or by the node or network while opening the tunnel. */
type Refusal =
  & { reply: ReplyCode; reason: string; message: string }
  & Pick<Extract<ConnectDecision, { open: false }>, "denied" | "event">;

/** What every connection of one listener shares. */
interface Ctx {
  /** Replaced by this server's onChange subscription (startSocksServer), with tunnels.rt. */
  rt: Runtime;
  log: EventLog;
  metrics: AgentMetrics;
  tunnels: TunnelClientDeps;
  logins: SocksLogins;
  /** Tunnels per LAN client (gateway.max_connections_per_client). */
  perClient: Counter;
  /** Rate-limited warnings keyed by source. */
  warn(source: string, event: string, fields: Record<string, unknown>): void;
  /** The gateway's allow_cidr networks, parsed once per cluster map. */
  networks(gw: string): Cidr[];
}

export function startSocksServer(
  source: RuntimeSource,
  listen: HostPort,
  peers: PeerPool,
  log: EventLog,
  metrics: AgentMetrics,
  flows: FlowWatch,
  /** Tunnels open through every inbound of this agent (shared with its forwards). */
  counts: TunnelCounts,
  /** Asks the nodes for a newer cluster map when a name is unknown (agent/map_refresh.ts). */
  refreshMap?: () => Promise<boolean>,
): SocksServer {
  const listener = Deno.listen({ hostname: listen.host, port: listen.port });
  const rt = source.current();
  const ctx: Ctx = {
    rt,
    log,
    metrics,
    tunnels: { rt, peers, log, metrics, flows, refreshMap, counts },
    logins: createSocksLogins(() => source.current()),
    perClient: new Counter(),
    warn: sourceWarnings(log),
    networks: allowedNetworks(() => source.current()),
  };
  // A reload: connections from now on see the new map, limits and identities; those past
  // their request keep the tunnel they have (the node cuts what its map no longer allows).
  const unsubscribe = source.onChange("socks_server", (next) => {
    ctx.rt = next;
    ctx.tunnels.rt = next;
  });
  const open = new Set<Deno.TcpConn>();
  const perSource = new Counter();

  (async function acceptLoop() {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (e instanceof Deno.errors.BadResource) return; // listener closed
        acceptFailed(ctx, e);
        continue;
      }
      const source = conn.remoteAddr.hostname;
      const counts = { total: open.size, fromSource: perSource.get(source) };
      const admission = admitConnection(source, counts, edgeLimits(ctx));
      if (!admission.admit) {
        refuseAtAccept(ctx, conn, source, admission);
        continue;
      }
      open.add(conn);
      perSource.add(source, 1);
      handle(ctx, conn)
        .catch((e) => {
          log.error("socks.internal_error", { error: String(e), stack: e?.stack });
          return false;
        })
        .then((relayed) => {
          open.delete(conn);
          perSource.add(source, -1);
          // A relay closes its socket; closing it again throws (and builds) a BadResource
          // error per tunnel, ~3% of the agent's CPU per CONNECT.
          if (!relayed) closeQuietly(conn);
        });
    }
  })();
  return {
    addr: listener.addr as Deno.NetAddr,
    close() {
      unsubscribe();
      closeQuietly(listener);
      for (const c of open) closeQuietly(c);
    },
  };
}

function edgeLimits({ rt, networks }: Ctx): EdgeLimits {
  const { gateway, limits } = rt.loaded.config;
  return {
    maxConnections: limits.max_socks_connections,
    maxPerSource: gateway?.max_connections_per_source,
    allowed: gateway ? networks(gateway.name) : undefined,
  };
}

/** Closed before anything is read: a refused source holds nothing. */
function refuseAtAccept(
  ctx: Ctx,
  conn: Deno.TcpConn,
  source: string,
  a: Extract<Admission, { admit: false }>,
) {
  closeQuietly(conn);
  ctx.metrics.socksRefused.inc({ reason: a.reason });
  if (a.reason === "source_denied") return ctx.warn(source, "gateway.source_denied", { source });
  const scope = a.reason === "source_limit" ? "source" : "total";
  ctx.warn(source, "socks.connection_limit", { source, scope, detail: a.message });
}

/** A client that reset before it was taken (a port scan's connect-then-reset) fails the
 * accept: counted, logged at debug. Anything else (out of descriptors) is a warning. */
function acceptFailed(ctx: Ctx, e: unknown) {
  ctx.metrics.socksErrors.inc({ reason: "accept_failed" });
  const gone = e instanceof Deno.errors.NotConnected ||
    e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.ConnectionAborted;
  if (gone) ctx.log.debug("socks.accept_failed", { error: String(e) });
  else ctx.warn("accept", "socks.accept_failed", { error: String(e) });
}

/** Serves one SOCKS connection; true once a relay carried it (and so closed the socket). */
async function handle(ctx: Ctx, conn: Deno.TcpConn): Promise<boolean> {
  const trace = startTrace();
  trace.mark("accepted");
  const { perClient } = ctx;
  const client = formatHostPort({ host: conn.remoteAddr.hostname, port: conn.remoteAddr.port });
  const buf = new StreamBuffer(handshakeSource(conn));
  const timer = setTimeout(() => closeQuietly(conn), SOCKS_HANDSHAKE_TIMEOUT_MS);
  let caller: Caller | undefined;
  let request;
  try {
    conn.setNoDelay(true);
    caller = await negotiate(ctx, conn, buf, client);
    if (!caller) return false;
    trace.mark("greeted");
    request = await buf.read(parseRequest, MAX_REQUEST_BYTES);
    trace.mark("request_parsed");
  } catch (e) {
    dropMalformed(ctx, conn, client, e);
    return false;
  } finally {
    // What follows has its own bounds (connect, tunnel reply timeouts).
    clearTimeout(timer);
  }
  const { lanClient } = caller;
  const dest = formatHostPort({ host: request.address.host, port: request.port });
  const decide = () => {
    const rt = ctx.rt; // again after a map refresh: its reload replaced it
    const { gateway, limits } = rt.loaded.config;
    return decideConnect(
      { principal: caller.identity.principal, lanClient, services: caller.services },
      request,
      rt.view.cluster,
      { maxTunnels: limits.max_tunnels, maxPerClient: gateway?.max_connections_per_client },
      {
        tunnels: ctx.tunnels.counts.open,
        ofClient: lanClient ? perClient.get(lanClient) : 0,
      },
    );
  };
  let decision = decide();
  // A `.flor` name we do not know may be a service added since our last map refresh: ask the
  // nodes once before saying it is unknown (other names, example.com, never become services).
  if (
    !decision.open && decision.reason === "unknown_service" &&
    /\.flor\.?$/i.test(request.address.host) && await ctx.tunnels.refreshMap?.()
  ) {
    decision = decide();
  }
  if (!decision.open) {
    await refuse(ctx, conn, caller, dest, decision);
    return false;
  }
  trace.mark("gate_decided");
  if (lanClient) perClient.add(lanClient, 1);
  try {
    return await carry(ctx, conn, buf, caller, decision, client, dest, trace);
  } finally {
    if (lanClient) perClient.add(lanClient, -1);
  }
}

/** Opens the tunnel the gate decided on, answers the client, and relays until either side
 * ends (true: the relay closed the socket); a refusal by the node or the network is answered
 * like the gate's. */
async function carry(
  ctx: Ctx,
  conn: Deno.TcpConn,
  buf: StreamBuffer,
  caller: Caller,
  decision: Extract<ConnectDecision, { open: true }>,
  source: string,
  dest: string,
  trace: PhaseTrace,
): Promise<boolean> {
  const { identity, lanClient } = caller;
  const target = { identity, service: decision.service, port: decision.port };
  const opened = await openTunnel(ctx.tunnels.peers, identity, decision.node, target, trace);
  if (!opened.ok) {
    await refuse(ctx, conn, caller, dest, opened);
    return false;
  }
  await writeAll(conn, encodeReply(Reply.SUCCEEDED)).catch((e) => {
    abandonTunnel(opened); // the client left while the node was answering
    throw e;
  });
  trace.mark("client_replied");
  // The relay's own reads start now, sized for data; the handshake's were small.
  await carryTunnel(ctx.tunnels, tcpDuplex(conn), opened, {
    principal: identity.id,
    service: decision.service,
    source,
    lanClient,
    tcpLeftover: buf.release(),
    trace,
  });
  return true;
}

/** Applies a refusal: its metrics and events, then the SOCKS reply. */
async function refuse(ctx: Ctx, conn: Deno.TcpConn, caller: Caller, dest: string, d: Refusal) {
  if (d.denied) ctx.metrics.accessDenied.inc(d.denied);
  if (d.event) ctx.log.warn(d.event.name, d.event.fields);
  ctx.metrics.tunnelsFailed.inc({ side: "client", reason: d.reason });
  ctx.log.info("socks.refused", {
    principal: caller.identity.id,
    ...(caller.lanClient ? { lan_client: caller.lanClient } : {}),
    dest,
    reply: d.reply,
    reason: d.reason,
    detail: d.message,
  });
  await writeAll(conn, encodeReply(d.reply)).catch(() => {});
}

/** Greeting and optional RFC 1929 sub-negotiation; returns who speaks. A SOCKS4 request
 * gets the SOCKS4 rejection instead. */
async function negotiate(
  ctx: Ctx,
  conn: Deno.TcpConn,
  buf: StreamBuffer,
  client: string,
): Promise<Caller | undefined> {
  const { rt, metrics } = ctx;
  const hello = await buf.read(parseHello, MAX_HELLO_BYTES);
  if (hello.version === 4) {
    await writeAll(conn, encodeSocks4Rejection());
    metrics.socksErrors.inc({ reason: "socks4" });
    ctx.log.info("socks.refused", {
      client,
      reason: "socks4",
      detail: "SOCKS4 is not supported: configure the client for SOCKS5",
    });
    return undefined;
  }
  const gw = rt.loaded.config.gateway;
  const hasPasswords = gw !== undefined ||
    [...rt.identities.values()].some((i) => i.password !== undefined);
  const method = chooseMethod(hello.greeting.methods, {
    noAuth: !gw && rt.defaultIdentity !== undefined,
    userPass: hasPasswords,
  });
  await writeAll(conn, encodeMethodSelection(method));
  if (method === Method.NO_ACCEPTABLE) {
    metrics.socksErrors.inc({ reason: "no_acceptable_method" });
    return undefined;
  }
  if (method === Method.NO_AUTH) return { identity: rt.defaultIdentity! };
  const { username, password } = await buf.read(parseUserPass, MAX_USERPASS_BYTES);
  const source = conn.remoteAddr.hostname;
  const caller = gw
    ? await ctx.logins.gateway(gw.name, source, username, password)
    : ctx.logins.local(username, password);
  await writeAll(conn, encodeUserPassStatus(caller !== undefined && caller !== "limited"));
  const fields = { source, username: username.slice(0, 64) };
  if (caller === "limited") {
    metrics.rateLimited.inc({ what: "socks_login" });
    ctx.warn(source, "socks.login_limited", fields);
    return undefined;
  }
  if (!caller) {
    metrics.authFailures.inc({ reason: "socks_password" });
    ctx.warn(source, "socks.auth_failed", fields);
    return undefined;
  }
  return caller;
}

function dropMalformed(ctx: Ctx, conn: Deno.TcpConn, client: string, e: unknown) {
  const { log, metrics } = ctx;
  if (e instanceof Socks5Error) {
    metrics.socksErrors.inc({ reason: e.code });
    log.info("socks.malformed", { client, code: e.code, detail: e.message });
    if (e.reply !== undefined) return writeAll(conn, encodeReply(e.reply)).catch(() => {});
    return;
  }
  if (e instanceof RangeError) {
    metrics.socksErrors.inc({ reason: "too_long" });
    log.info("socks.malformed", { client, code: "too_long", detail: e.message });
    return;
  }
  // The client went away or the handshake timer closed the socket.
  metrics.socksErrors.inc({ reason: "closed" });
  log.debug("socks.closed_early", { client, detail: String(e) });
}

/** A few lines per second per source and event at most: a LAN device in a loop cannot fill
 * the disk, and its failed logins do not hide that it hit a connection cap. */
function sourceWarnings(log: EventLog) {
  const limiter = new RateLimiter({ ratePerSecond: 1, burst: 5 });
  return function warn(source: string, event: string, fields: Record<string, unknown>) {
    const key = `${event} ${source}`;
    if (!limiter.take(key, Date.now())) return;
    const suppressed = limiter.drainRefused(key);
    log.warn(event, suppressed ? { ...fields, suppressed } : fields);
  };
}

/** allow_cidr parsed once per cluster map (a reload brings new arrays). */
function allowedNetworks(runtime: () => Runtime) {
  const cache = new WeakMap<readonly string[], Cidr[]>();
  return function networks(gw: string): Cidr[] {
    const list = entryOf(runtime().view.cluster.gateways, gw)?.allow_cidr ?? [];
    let parsed = cache.get(list);
    if (!parsed) {
      parsed = list.map(parseCidr);
      cache.set(list, parsed);
    }
    return parsed;
  };
}

/** Each read of the handshake: a SOCKS message is at most 513 bytes (RFC 1929's), so a
 * small buffer takes any of them whole, where a relay-sized read would allocate 16 KiB. */
export const HANDSHAKE_READ_BYTES = 1024;

/** The client's bytes during the handshake, read straight from the socket. */
function handshakeSource(conn: Deno.TcpConn): ChunkSource {
  return {
    async read() {
      const b = new Uint8Array(HANDSHAKE_READ_BYTES);
      const n = await conn.read(b);
      return n === null ? null : b.subarray(0, n);
    },
    cancel: () => closeQuietly(conn),
  };
}

async function writeAll(conn: Deno.TcpConn, b: Uint8Array) {
  for (let off = 0; off < b.length;) off += await conn.write(b.subarray(off));
}

/**
 * The SOCKS5 front door of an agent: local clients name a service (`web.flor:8080`), the
 * agent picks the principal they speak as (default identity, or RFC 1929 credentials),
 * checks the policy early for a fast answer, and carries the connection through a tunnel to
 * the node hosting the service. The node checks again; its answer is authoritative.
 */
import { formatHostPort, type HostPort } from "../lib/cluster.ts";
import type { EventLog } from "../lib/log.ts";
import { closeQuietly, relay, tcpDuplex } from "../lib/relay.ts";
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
import { StreamBuffer } from "../lib/stream_buffer.ts";
import { constantTimeEqual, frame } from "../lib/binary.ts";
import {
  decodeTunnelReply,
  encodeTunnelRequest,
  MAX_TUNNEL_REPLY_BYTES,
  socksReplyFor,
  TunnelStatus,
  tunnelStatusName,
} from "../lib/tunnel_header.ts";
import type { AgentMetrics } from "./agent_metrics.ts";
import type { FlowWatch } from "./flow_watch.ts";
import { type Cidr, parseCidr } from "../lib/cidr.ts";
import { generatePassword, hashPassword, verifyPassword } from "../lib/password_hash.ts";
import { Counter, RateLimiter } from "../lib/rate_limit.ts";
import { closeState, PeerError } from "../lib/quic_client.ts";
import { entryOf } from "../lib/cluster.ts";
import { LoginGate } from "./login_gate.ts";
import type { PeerPool } from "./peer_pool.ts";
import type { LocalIdentity, Runtime } from "./runtime.ts";
import {
  admitConnection,
  type ConnectDecision,
  decideConnect,
  type EdgeLimits,
} from "./socks_gate.ts";

/** A client must finish greeting, auth and request within this: an idle half-open client
 * would otherwise hold a socket forever. */
export const SOCKS_HANDSHAKE_TIMEOUT_MS = 10_000;
/** How long the node may take to answer a tunnel request (it dials the target for up to 5 s). */
export const TUNNEL_REPLY_TIMEOUT_MS = 8_000;

export interface SocksServer {
  addr: Deno.NetAddr;
  close(): void;
}

const PEER_REPLY: Record<PeerError["code"], ReplyCode> = {
  unknown_node: Reply.HOST_UNREACHABLE,
  unreachable: Reply.NETWORK_UNREACHABLE,
  handshake: Reply.NETWORK_UNREACHABLE,
  auth_denied: Reply.NOT_ALLOWED,
};

class TunnelTimeout extends Error {}

class Refused extends Error {
  constructor(readonly reply: ReplyCode, readonly reason: string, message: string) {
    super(message);
  }
}

/** Who is speaking on a SOCKS connection: the identity its tunnels use, and for flor-gw the
 * LAN client and the services it may use. */
interface Caller {
  identity: LocalIdentity;
  lanClient?: string;
  services?: ReadonlySet<string>;
}

export function startSocksServer(
  rt: Runtime,
  listen: HostPort,
  peers: PeerPool,
  log: EventLog,
  metrics: AgentMetrics,
  flows: FlowWatch,
): SocksServer {
  const listener = Deno.listen({ hostname: listen.host, port: listen.port });
  const open = new Set<Deno.TcpConn>();
  const perSource = new Counter();
  /** Tunnels this listener holds (from the gate's yes to close), for limits.max_tunnels. */
  let tunnels = 0;
  const perClient = new Counter();
  const logLimiter = new RateLimiter({ ratePerSecond: 1, burst: 5 });
  const logins = new LoginGate();
  const loginWaiters = new Map<string, Array<() => void>>();
  // Unknown gateway usernames are checked against this, so they cost what known ones do.
  let dummy: Promise<string> | undefined;
  const dummyHash = () => (dummy ??= hashPassword(generatePassword()));
  if (rt.loaded.config.gateway) dummyHash();

  async function acceptLoop() {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (e instanceof Deno.errors.BadResource) return; // listener closed
        acceptFailed(e);
        continue;
      }
      const source = conn.remoteAddr.hostname;
      const admission = admitConnection(
        source,
        { total: open.size, fromSource: perSource.get(source) },
        edgeLimits(),
      );
      if (!admission.admit) {
        // Closed before anything is read: a refused source holds nothing.
        closeQuietly(conn);
        metrics.socksRefused.inc({ reason: admission.reason });
        if (admission.reason === "source_denied") {
          logFromSource(source, "gateway.source_denied", { source });
        } else {
          const scope = admission.reason === "source_limit" ? "source" : "total";
          logFromSource(source, "socks.connection_limit", {
            source,
            scope,
            detail: admission.message,
          });
        }
        continue;
      }
      open.add(conn);
      perSource.add(source, 1);
      handle(conn)
        .catch((e) => log.error("socks.internal_error", { error: String(e), stack: e?.stack }))
        .finally(() => {
          open.delete(conn);
          perSource.add(source, -1);
          closeQuietly(conn);
        });
    }
  }

  /** A client that reset before it was taken (a port scan's connect-then-reset) fails the
   * accept: counted, logged at debug. Anything else (out of descriptors) is a warning. */
  function acceptFailed(e: unknown) {
    metrics.socksErrors.inc({ reason: "accept_failed" });
    const gone = e instanceof Deno.errors.NotConnected ||
      e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.ConnectionAborted;
    if (gone) log.debug("socks.accept_failed", { error: String(e) });
    else logFromSource("accept", "socks.accept_failed", { error: String(e) });
  }

  function edgeLimits(): EdgeLimits {
    const { gateway, limits } = rt.loaded.config;
    return {
      maxConnections: limits.max_socks_connections,
      maxPerSource: gateway?.max_connections_per_source,
      allowed: gateway ? allowedNetworks(gateway.name) : undefined,
    };
  }

  async function handle(conn: Deno.TcpConn) {
    const client = formatHostPort({ host: conn.remoteAddr.hostname, port: conn.remoteAddr.port });
    const tcp = tcpDuplex(conn);
    const buf = new StreamBuffer(tcp.readable);
    const timer = setTimeout(() => closeQuietly(conn), SOCKS_HANDSHAKE_TIMEOUT_MS);
    let caller: Caller | undefined;
    let request;
    try {
      conn.setNoDelay(true);
      caller = await negotiate(conn, buf, client);
      if (!caller) return;
      request = await buf.read(parseRequest, MAX_REQUEST_BYTES);
    } catch (e) {
      return dropMalformed(conn, client, e);
    } finally {
      // What follows has its own bounds (connect, tunnel reply timeouts).
      clearTimeout(timer);
    }
    const lanClient = caller.lanClient;
    const dest = formatHostPort({ host: request.address.host, port: request.port });
    const gw = rt.loaded.config.gateway;
    const decision = decideConnect(
      { principal: caller.identity.principal, lanClient, services: caller.services },
      request,
      rt.view.cluster,
      {
        maxTunnels: rt.loaded.config.limits.max_tunnels,
        maxPerClient: gw?.max_connections_per_client,
      },
      { tunnels, ofClient: lanClient ? perClient.get(lanClient) : 0 },
    );
    if (!decision.open) return refuse(conn, caller, dest, decision);
    tunnels++;
    if (lanClient) perClient.add(lanClient, 1);
    try {
      await carry(conn, tcp, buf, caller, decision, client);
    } catch (e) {
      if (!(e instanceof Refused)) throw e;
      await refuse(conn, caller, dest, { reply: e.reply, reason: e.reason, message: e.message });
    } finally {
      tunnels--;
      if (lanClient) perClient.add(lanClient, -1);
    }
  }

  /** Opens the tunnel the gate decided on, answers the client, and relays until either side
   * ends. Throws Refused when the node or the network says no. */
  async function carry(
    conn: Deno.TcpConn,
    tcp: ReturnType<typeof tcpDuplex>,
    buf: StreamBuffer,
    caller: Caller,
    decision: Extract<ConnectDecision, { open: true }>,
    client: string,
  ) {
    const identity = caller.identity;
    const principal = identity.id;
    const lanClient = caller.lanClient;
    const { service } = decision;
    const { stream, leftover } = await openTunnel(identity, decision.node, service, decision.port);
    await writeAll(conn, encodeReply(Reply.SUCCEEDED));
    metrics.tunnelsOpened.inc({ side: "client", service });
    metrics.tunnelsOpen.add({ side: "client" }, 1);
    log.info("tunnel.open", {
      side: "client",
      principal,
      service,
      node: decision.node,
      source: client,
      ...(lanClient ? { lan_client: lanClient } : {}),
    });
    const started = performance.now();
    const untrack = flows.track(tcp, { side: "client", node: decision.node, service });
    try {
      const r = await relay(tcp, stream, {
        tcpLeftover: buf.release(),
        streamLeftover: leftover,
        onBytes: (dir, n) => {
          const direction = dir === "sent" ? "out" : "in";
          metrics.bytes.inc({ side: "client", direction }, n);
          metrics.peerBytes.inc({ node: decision.node, direction }, n);
        },
      });
      log.info("tunnel.close", {
        side: "client",
        principal,
        service,
        bytes_out: r.sent,
        bytes_in: r.received,
        ms: Math.round(performance.now() - started),
        ...(r.error ? { error: String(r.error) } : {}),
      });
    } finally {
      untrack();
      metrics.tunnelsOpen.add({ side: "client" }, -1);
    }
  }

  /** Applies a refusal: its metrics and events, then the SOCKS reply. */
  async function refuse(
    conn: Deno.TcpConn,
    caller: Caller,
    dest: string,
    d:
      & { reply: ReplyCode; reason: string; message: string }
      & Pick<
        Extract<ConnectDecision, { open: false }>,
        "denied" | "event"
      >,
  ) {
    if (d.denied) metrics.accessDenied.inc(d.denied);
    if (d.event) log.warn(d.event.name, d.event.fields);
    metrics.tunnelsFailed.inc({ side: "client", reason: d.reason });
    log.info("socks.refused", {
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
    conn: Deno.TcpConn,
    buf: StreamBuffer,
    client: string,
  ): Promise<Caller | undefined> {
    const hello = await buf.read(parseHello, MAX_HELLO_BYTES);
    if (hello.version === 4) {
      await writeAll(conn, encodeSocks4Rejection());
      metrics.socksErrors.inc({ reason: "socks4" });
      log.info("socks.refused", {
        client,
        reason: "socks4",
        detail: "SOCKS4 is not supported: configure the client for SOCKS5",
      });
      return undefined;
    }
    const gw = rt.loaded.config.gateway;
    const source = conn.remoteAddr.hostname;
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
    const caller = gw
      ? await gatewayLogin(gw.name, source, username, password)
      : localLogin(username, password);
    await writeAll(conn, encodeUserPassStatus(caller !== undefined && caller !== "limited"));
    if (caller === "limited") {
      metrics.rateLimited.inc({ what: "socks_login" });
      logFromSource(source, "socks.login_limited", { source, username: username.slice(0, 64) });
      return undefined;
    }
    if (!caller) {
      metrics.authFailures.inc({ reason: "socks_password" });
      logFromSource(source, "socks.auth_failed", { source, username: username.slice(0, 64) });
      return undefined;
    }
    return caller;
  }

  function localLogin(username: string, password: string): Caller | undefined {
    const identity = findByUsername(username);
    const ok = identity?.password !== undefined && constantTimeEqual(identity.password, password);
    return ok ? { identity: identity! } : undefined;
  }

  /** A LAN client of flor-gw: name and password from the gateway's bundle, services from the
   * cluster map; it speaks as the gateway's identity. "limited": the source has used up its
   * wrong passwords (login_gate.ts), so this one was not checked. */
  async function gatewayLogin(
    gw: string,
    source: string,
    username: string,
    password: string,
  ): Promise<Caller | "limited" | undefined> {
    for (;;) {
      const step = logins.begin(source, Date.now());
      if (step === "refuse") return "limited";
      if (step === "verify") break;
      await new Promise<void>((wake) => {
        const list = loginWaiters.get(source) ?? [];
        list.push(wake);
        loginWaiters.set(source, list);
      });
    }
    let ok = false;
    try {
      const spec = entryOf(rt.view.cluster.gateways, gw)?.clients;
      const entry = spec ? entryOf(spec, username) : undefined;
      const hash = entry ? rt.gatewayClients?.get(username) : undefined;
      // An unknown name is checked against the dummy hash: the same work, the same time.
      const verified = await verifyPassword(password, hash ?? await dummyHash());
      const identity = rt.identities.get(`gateway:${gw}`);
      ok = verified && hash !== undefined && identity !== undefined;
      return ok
        ? { identity: identity!, lanClient: username, services: new Set(entry!.services) }
        : undefined;
    } finally {
      logins.end(source, ok, Date.now());
      const waiting = loginWaiters.get(source);
      loginWaiters.delete(source);
      for (const wake of waiting ?? []) wake();
    }
  }

  const cidrCache = new WeakMap<readonly string[], Cidr[]>();
  function allowedNetworks(gw: string): Cidr[] {
    const list = entryOf(rt.view.cluster.gateways, gw)?.allow_cidr ?? [];
    let parsed = cidrCache.get(list);
    if (!parsed) {
      parsed = list.map(parseCidr);
      cidrCache.set(list, parsed);
    }
    return parsed;
  }

  /** A few lines per second per source and event at most: a LAN device in a loop cannot fill
   * the disk, and its failed logins do not hide that it hit a connection cap. */
  function logFromSource(source: string, event: string, fields: Record<string, unknown>) {
    const key = `${event} ${source}`;
    if (!logLimiter.take(key, Date.now())) return;
    const suppressed = logLimiter.drainRefused(key);
    log.warn(event, suppressed ? { ...fields, suppressed } : fields);
  }

  function findByUsername(username: string): LocalIdentity | undefined {
    // `web` or `service:web`; only identities that have a password can be selected.
    for (const i of rt.identities.values()) {
      if (i.password === undefined) continue;
      if (username === i.id || username === i.principal.name) return i;
    }
    return undefined;
  }

  /** Opens a tunnel stream to the node. A shared connection may have died since its last use
   * (node restarted, network change): that shows as a transport error, and the request is
   * retried once on a fresh connection. A refusal by the node is final. */
  async function openTunnel(identity: LocalIdentity, node: string, service: string, port: number) {
    for (let attempt = 1;; attempt++) {
      let conn: Deno.QuicConn;
      try {
        conn = await peers.connection(identity, node);
      } catch (e) {
        if (e instanceof PeerError) throw new Refused(PEER_REPLY[e.code], e.code, e.message);
        throw e;
      }
      try {
        return await requestTunnel(conn, node, service, port);
      } catch (e) {
        if (e instanceof Refused) throw e;
        const { timedOut } = await closeState(conn);
        peers.forget(identity, node, conn);
        if (timedOut) {
          // The node stopped answering: say so now rather than wait on a new handshake.
          throw new Refused(Reply.NETWORK_UNREACHABLE, "node_down", `${node} is not answering`);
        }
        if (attempt < 2) continue;
        if (e instanceof TunnelTimeout) {
          throw new Refused(Reply.TTL_EXPIRED, "node_timeout", `${node} did not answer in time`);
        }
        throw new Refused(Reply.NETWORK_UNREACHABLE, "connection_lost", `to ${node}: ${e}`);
      }
    }
  }

  async function requestTunnel(conn: Deno.QuicConn, node: string, service: string, port: number) {
    const stream = await conn.createBidirectionalStream();
    const w = stream.writable.getWriter();
    const sb = new StreamBuffer(stream.readable);
    let timedOut = false;
    const timeout = setTimeout(() => {
      timedOut = true;
      sb.cancel();
    }, TUNNEL_REPLY_TIMEOUT_MS);
    try {
      await w.write(frame(encodeTunnelRequest({ service, port })));
      w.releaseLock();
      const reply = decodeTunnelReply(await sb.readFrame(MAX_TUNNEL_REPLY_BYTES));
      if (reply.status !== TunnelStatus.OK) {
        await stream.writable.close().catch(() => {});
        const reason = `node_${tunnelStatusName(reply.status)}`;
        throw new Refused(socksReplyFor(reply.status), reason, `${node}: ${reply.message}`);
      }
      return { stream, leftover: sb.release() };
    } catch (e) {
      if (e instanceof Refused) throw e;
      await stream.writable.abort().catch(() => {});
      await sb.cancel();
      throw timedOut ? new TunnelTimeout() : e;
    } finally {
      clearTimeout(timeout);
    }
  }

  function dropMalformed(conn: Deno.TcpConn, client: string, e: unknown) {
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

  acceptLoop();
  return {
    addr: listener.addr as Deno.NetAddr,
    close() {
      closeQuietly(listener);
      for (const c of open) closeQuietly(c);
    },
  };
}

async function writeAll(conn: Deno.TcpConn, b: Uint8Array) {
  for (let off = 0; off < b.length;) off += await conn.write(b.subarray(off));
}

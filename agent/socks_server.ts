/**
 * The SOCKS5 front door of an agent: local clients name a service (`web.flor:8080`), the
 * agent picks the principal they speak as (default identity, or RFC 1929 credentials),
 * checks the policy early for a fast answer, and carries the connection through a tunnel to
 * the node hosting the service. The node checks again; its answer is authoritative.
 */
import { formatHostPort, type HostPort } from "../lib/cluster.ts";
import type { EventLog } from "../lib/log.ts";
import { closeQuietly, type TcpDuplex, tcpDuplex } from "../lib/relay.ts";
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
import { constantTimeEqual } from "../lib/binary.ts";
import type { AgentMetrics } from "./agent_metrics.ts";
import type { FlowWatch } from "./flow_watch.ts";
import { type Cidr, parseCidr } from "../lib/cidr.ts";
import { generatePassword, hashPassword, verifyPassword } from "../lib/password_hash.ts";
import { Counter, RateLimiter } from "../lib/rate_limit.ts";
import { entryOf } from "../lib/cluster.ts";
import { LoginGate } from "./login_gate.ts";
import type { PeerPool } from "./peer_pool.ts";
import type { LocalIdentity, Runtime } from "./runtime.ts";
import { carryTunnel, openTunnel, type TunnelClientDeps } from "./tunnel_client.ts";
import {
  admitConnection,
  type ConnectDecision,
  decideConnect,
  type EdgeLimits,
} from "./socks_gate.ts";

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
  const deps: TunnelClientDeps = { rt, peers, log, metrics, flows, counts: { open: 0 } };
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
      { tunnels: deps.counts.open, ofClient: lanClient ? perClient.get(lanClient) : 0 },
    );
    if (!decision.open) return refuse(conn, caller, dest, decision);
    if (lanClient) perClient.add(lanClient, 1);
    try {
      await carry(conn, tcp, buf, caller, decision, client, dest);
    } finally {
      if (lanClient) perClient.add(lanClient, -1);
    }
  }

  /** Opens the tunnel the gate decided on, answers the client, and relays until either side
   * ends; a refusal by the node or the network is answered like the gate's. */
  async function carry(
    conn: Deno.TcpConn,
    tcp: TcpDuplex,
    buf: StreamBuffer,
    caller: Caller,
    decision: Extract<ConnectDecision, { open: true }>,
    source: string,
    dest: string,
  ) {
    const { identity, lanClient } = caller;
    const target = { identity, service: decision.service, port: decision.port };
    const opened = await openTunnel(peers, identity, decision.node, target);
    if (!opened.ok) return refuse(conn, caller, dest, opened);
    await writeAll(conn, encodeReply(Reply.SUCCEEDED));
    await carryTunnel(deps, tcp, opened, {
      principal: identity.id,
      service: decision.service,
      source,
      lanClient,
      tcpLeftover: buf.release(),
    });
  }

  /** Applies a refusal: its metrics and events, then the SOCKS reply. */
  async function refuse(
    conn: Deno.TcpConn,
    caller: Caller,
    dest: string,
    d: Refusal,
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

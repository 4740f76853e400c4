/**
 * The SOCKS5 front door of an agent: local clients name a service (`web.flor:8080`), the
 * agent picks the principal they speak as (default identity, or RFC 1929 credentials),
 * checks the policy early for a fast answer, and carries the connection through a tunnel to
 * the node hosting the service. The node checks again; its answer is authoritative.
 */
import { formatHostPort, type HostPort } from "../lib/cluster.ts";
import type { EventLog } from "../lib/log.ts";
import { serviceFromHost, serviceLabel } from "../lib/policy.ts";
import { closeQuietly, tcpDuplex } from "../lib/relay.ts";
import {
  chooseMethod,
  Command,
  encodeMethodSelection,
  encodeReply,
  encodeUserPassStatus,
  MAX_GREETING_BYTES,
  MAX_REQUEST_BYTES,
  MAX_USERPASS_BYTES,
  Method,
  parseGreeting,
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
import { anyContains, type Cidr, parseCidr } from "../lib/cidr.ts";
import { verifyPassword } from "../lib/password_hash.ts";
import { Counter, RateLimiter } from "../lib/rate_limit.ts";
import type { PeerPool } from "./peer_pool.ts";
import { carryTunnel, openServiceTunnel } from "./tunnel_client.ts";
import type { LocalIdentity, Runtime } from "./runtime.ts";

/** A client must finish greeting, auth and request within this: an idle half-open client
 * would otherwise hold a socket forever. */
export const SOCKS_HANDSHAKE_TIMEOUT_MS = 10_000;

export interface SocksServer {
  addr: Deno.NetAddr;
  close(): void;
}

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
  const perClient = new Counter();
  const logLimiter = new RateLimiter({ ratePerSecond: 1, burst: 5 });
  /** Password attempts per source address (each costs a PBKDF2 derivation on flor-gw). */
  const loginLimiter = new RateLimiter({ ratePerSecond: 5, burst: 20 });

  async function acceptLoop() {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (e instanceof Deno.errors.BadResource) return; // listener closed
        log.warn("socks.accept_failed", { error: String(e) });
        continue;
      }
      open.add(conn);
      handle(conn)
        .catch((e) => log.error("socks.internal_error", { error: String(e), stack: e?.stack }))
        .finally(() => {
          open.delete(conn);
          closeQuietly(conn);
        });
    }
  }

  async function handle(conn: Deno.TcpConn) {
    conn.setNoDelay(true);
    const client = formatHostPort({ host: conn.remoteAddr.hostname, port: conn.remoteAddr.port });
    const tcp = tcpDuplex(conn);
    const buf = new StreamBuffer(tcp.readable);
    const timer = setTimeout(() => closeQuietly(conn), SOCKS_HANDSHAKE_TIMEOUT_MS);
    let caller: Caller | undefined;
    let request;
    try {
      caller = await negotiate(conn, buf);
      if (!caller) return;
      request = await buf.read(parseRequest, MAX_REQUEST_BYTES);
    } catch (e) {
      return dropMalformed(conn, client, e);
    } finally {
      // What follows has its own bounds (connect, tunnel reply timeouts).
      clearTimeout(timer);
    }
    const identity = caller.identity;
    const principal = identity.id;
    const lanClient = caller.lanClient;
    const dest = formatHostPort({ host: request.address.host, port: request.port });
    let counted = false;
    try {
      if (request.command !== Command.CONNECT) {
        throw new Refused(Reply.COMMAND_NOT_SUPPORTED, "command", "only CONNECT is supported");
      }
      if (request.address.type !== "domain") {
        throw new Refused(
          Reply.NOT_ALLOWED,
          "raw_ip",
          "raw IP destinations are refused: ask for <service>.flor",
        );
      }
      const cluster = rt.view.cluster;
      const service = serviceFromHost(cluster, request.address.host);
      if (!service) {
        throw new Refused(Reply.HOST_UNREACHABLE, "unknown_service", `${dest} is not a service`);
      }
      if (caller.services && !caller.services.has(service)) {
        metrics.accessDenied.inc({
          side: "gateway",
          service: serviceLabel(rt.view.cluster, service),
        });
        log.warn("access.denied", { principal, lan_client: lanClient, service });
        throw new Refused(
          Reply.NOT_ALLOWED,
          "client_not_allowed",
          `${lanClient} may not use ${service} through this gateway`,
        );
      }
      const gw = rt.loaded.config.gateway;
      if (gw && lanClient) {
        if (perClient.get(lanClient) >= gw.max_connections_per_client) {
          throw new Refused(
            Reply.GENERAL_FAILURE,
            "client_limit",
            `${lanClient} has ${gw.max_connections_per_client} connections open`,
          );
        }
        perClient.add(lanClient, 1);
        counted = true;
      }
      const deps = { rt, peers, log, metrics, flows };
      const opened = await openServiceTunnel(deps, { identity, service, port: request.port });
      if (!opened.ok) throw new Refused(opened.reply, opened.reason, opened.message);
      await writeAll(conn, encodeReply(Reply.SUCCEEDED));
      await carryTunnel(deps, tcp, opened, {
        principal,
        service,
        source: client,
        lanClient,
        tcpLeftover: buf.release(),
      });
    } catch (e) {
      if (!(e instanceof Refused)) throw e;
      metrics.tunnelsFailed.inc({ side: "client", reason: e.reason });
      log.info("socks.refused", {
        principal,
        ...(lanClient ? { lan_client: lanClient } : {}),
        dest,
        reply: e.reply,
        reason: e.reason,
        detail: e.message,
      });
      await writeAll(conn, encodeReply(e.reply)).catch(() => {});
    } finally {
      if (counted && lanClient) perClient.add(lanClient, -1);
    }
  }

  /** Greeting and optional RFC 1929 sub-negotiation; returns who speaks. */
  async function negotiate(conn: Deno.TcpConn, buf: StreamBuffer): Promise<Caller | undefined> {
    const greeting = await buf.read(parseGreeting, MAX_GREETING_BYTES);
    const gw = rt.loaded.config.gateway;
    const source = conn.remoteAddr.hostname;
    if (gw && !anyContains(allowedNetworks(gw.name), source)) {
      // Not one of the LAN networks this gateway serves: refused before any credential check.
      await writeAll(conn, encodeMethodSelection(Method.NO_ACCEPTABLE));
      metrics.socksErrors.inc({ reason: "source_denied" });
      logFromSource(source, "gateway.source_denied", { source });
      return undefined;
    }
    const hasPasswords = gw !== undefined ||
      [...rt.identities.values()].some((i) => i.password !== undefined);
    const method = chooseMethod(greeting.methods, {
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
    await writeAll(conn, encodeUserPassStatus(caller !== undefined));
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
   * cluster map; it speaks as the gateway's identity. */
  async function gatewayLogin(gw: string, source: string, username: string, password: string) {
    if (!loginLimiter.take(source, Date.now())) return undefined; // guessing: no hash for it
    const spec = rt.view.cluster.gateways[gw]?.clients;
    const hash = rt.gatewayClients?.get(username);
    if (!spec || !Object.hasOwn(spec, username) || !hash) return undefined;
    if (!await verifyPassword(password, hash)) return undefined;
    const identity = rt.identities.get(`gateway:${gw}`);
    if (!identity) return undefined;
    return { identity, lanClient: username, services: new Set(spec[username].services) };
  }

  const cidrCache = new WeakMap<readonly string[], Cidr[]>();
  function allowedNetworks(gw: string): Cidr[] {
    const list = rt.view.cluster.gateways[gw]?.allow_cidr ?? [];
    let parsed = cidrCache.get(list);
    if (!parsed) {
      parsed = list.map(parseCidr);
      cidrCache.set(list, parsed);
    }
    return parsed;
  }

  /** A few lines per second per source at most: a LAN device in a loop cannot fill the disk. */
  function logFromSource(source: string, event: string, fields: Record<string, unknown>) {
    if (!logLimiter.take(source, Date.now())) return;
    const suppressed = logLimiter.drainRefused(source);
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

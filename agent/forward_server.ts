/**
 * Local port forwards: a loopback TCP listener per forward whose connections are tunnelled to
 * one service as the agent's default identity, for programs that cannot speak SOCKS5 (psql,
 * JDBC, RDP clients). Policy, events and metrics are the SOCKS tunnels' own
 * (agent/tunnel_client.ts); a refused connection is closed with a `forward.refused` event
 * saying why.
 */
import { formatHostPort } from "../lib/host_port.ts";
import { authorize } from "../lib/policy.ts";
import { RateLimiter } from "../lib/rate_limit.ts";
import { closeQuietly, tcpDuplex } from "../lib/relay.ts";
import {
  configuredForwards,
  forwardKey,
  type ForwardOrigin,
  forwardPort,
  type ForwardSpec,
  forwardTargetText,
} from "./forward_spec.ts";
import { carryTunnel, openServiceTunnel, type TunnelClientDeps } from "./tunnel_client.ts";
import type { RuntimeSource } from "./runtime.ts";

/** What `flor status` shows for one forward. */
export interface ForwardInfo {
  /** The bound address, `127.0.0.1:15432` (the real port when 0 was asked for). */
  listen: string;
  /** `db.flor:5432` or `db.flor` (the service's own port). */
  target: string;
  service: string;
  origin: ForwardOrigin;
  /** Connections being carried now, carried so far, and refused so far. */
  open: number;
  carried: number;
  refused: number;
}

export type ForwardErrorCode =
  | "no_identity"
  | "unknown_service"
  | "not_allowed"
  | "wrong_port"
  | "in_use"
  | "not_found";

export class ForwardError extends Error {
  override name = "ForwardError";
  constructor(readonly code: ForwardErrorCode, message: string) {
    super(message);
  }
}

export interface ForwardSet {
  /** Opens a forward now. A runtime forward must be allowed by the current map (a fast, clear
   * answer to `flor forward`); a configured one opens regardless, since the map may change. */
  add(spec: ForwardSpec, origin: ForwardOrigin): ForwardInfo;
  /** Closes the forward on that local address (`127.0.0.1:15432`) and its connections. */
  remove(listen: string): ForwardInfo;
  /** Makes flor.yaml's forwards these: those gone are closed, new ones opened (at start,
   * and on every reload when the set follows flor.yaml). */
  configure(specs: ForwardSpec[]): void;
  list(): ForwardInfo[];
  close(): void;
}

interface Live {
  spec: ForwardSpec;
  info: ForwardInfo;
  listener: Deno.TcpListener;
  conns: Set<Deno.TcpConn>;
}

/** `forward.refused` lines per forward: a program retrying in a loop cannot fill the disk. */
const REFUSAL_LOG_RATE = { ratePerSecond: 1, burst: 5 };

/** What every forward of one set shares. */
interface Forwards {
  /** Replaced by the set's onChange subscription (startForwards). */
  deps: TunnelClientDeps;
  live: Map<string, Live>;
  logLimiter: RateLimiter;
}

export function startForwards(
  source: RuntimeSource,
  deps: Omit<TunnelClientDeps, "rt">,
  /** On a reload, make the forwards flor.yaml's new ones (false: `flor forward --foreground`
   * runs its own list). */
  followConfig: boolean,
): ForwardSet {
  const fw: Forwards = {
    deps: { ...deps, rt: source.current() },
    live: new Map(),
    logLimiter: new RateLimiter(REFUSAL_LOG_RATE),
  };
  // A reload: connections from now on use the new identity and map; flor.yaml's forwards
  // follow it (runtime ones stay until removed).
  const unsubscribe = source.onChange("forwards", (next) => {
    fw.deps.rt = next;
    const cfg = next.loaded.config;
    if (followConfig) configure(fw, configuredForwards(cfg.cluster, cfg.forwards));
  });
  return {
    add: (spec, origin) => add(fw, spec, origin),
    remove(listen) {
      const f = find(fw, listen);
      if (!f) {
        throw new ForwardError(
          "not_found",
          `no forward on ${listen}; \`flor status\` lists the forwards`,
        );
      }
      shut(fw, f);
      return { ...f.info };
    },
    configure: (specs) => configure(fw, specs),
    list() {
      return [...fw.live.values()].map((f) => ({ ...f.info }));
    },
    close() {
      unsubscribe();
      for (const f of [...fw.live.values()]) shut(fw, f);
    },
  };
}

function add(fw: Forwards, spec: ForwardSpec, origin: ForwardOrigin): ForwardInfo {
  if (origin === "runtime") {
    const identity = fw.deps.rt.defaultIdentity;
    if (!identity) {
      throw new ForwardError(
        "no_identity",
        "this agent has no socks.default_identity to lend: only a user's agent forwards",
      );
    }
    const cluster = fw.deps.rt.view.cluster;
    const d = authorize(cluster, identity.principal, spec.service, forwardPort(cluster, spec));
    if (!d.allow) throw new ForwardError(d.reason, d.message);
  }
  return open(fw, spec, origin);
}

function configure(fw: Forwards, specs: ForwardSpec[]) {
  const wanted = new Map(specs.map((s) => [forwardKey(s.listen), s]));
  for (const f of [...fw.live.values()]) {
    if (f.info.origin !== "config") continue;
    const w = wanted.get(forwardKey(f.spec.listen));
    if (w && forwardTargetText(w) === f.info.target) wanted.delete(forwardKey(w.listen));
    else shut(fw, f);
  }
  for (const spec of wanted.values()) {
    try {
      open(fw, spec, "config");
    } catch (e) {
      // One busy port must not keep the agent (and its SOCKS5 port) from serving.
      fw.deps.log.error("forward.listen_failed", {
        listen: forwardKey(spec.listen),
        service: spec.service,
        error: (e as Error).message,
      });
    }
  }
}

function open(fw: Forwards, spec: ForwardSpec, origin: ForwardOrigin): ForwardInfo {
  const same = spec.listen.port === 0 ? undefined : find(fw, forwardKey(spec.listen));
  if (same) {
    throw new ForwardError(
      "in_use",
      `${same.info.listen} already forwards to ${same.info.target}; remove that first ` +
        `(flor forward --remove ${same.info.listen})`,
    );
  }
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: spec.listen.host, port: spec.listen.port });
  } catch (e) {
    const where = forwardKey(spec.listen);
    if (e instanceof Deno.errors.AddrInUse) {
      throw new ForwardError(
        "in_use",
        `${where} is already in use by another program: choose another local port`,
      );
    }
    throw new ForwardError("in_use", `cannot listen on ${where}: ${(e as Error).message}`);
  }
  const addr = listener.addr as Deno.NetAddr;
  const info: ForwardInfo = {
    listen: formatHostPort({ host: addr.hostname, port: addr.port }),
    target: forwardTargetText(spec),
    service: spec.service,
    origin,
    open: 0,
    carried: 0,
    refused: 0,
  };
  const f: Live = { spec, info, listener, conns: new Set() };
  fw.live.set(info.listen, f);
  acceptLoop(fw, f);
  fw.deps.log.info("forward.open", {
    listen: info.listen,
    service: spec.service,
    target: info.target,
    origin,
  });
  return { ...info };
}

async function acceptLoop(fw: Forwards, f: Live) {
  const { log } = fw.deps;
  for (;;) {
    let conn: Deno.TcpConn;
    try {
      conn = await f.listener.accept();
    } catch (e) {
      if (e instanceof Deno.errors.BadResource) return; // forward removed
      log.warn("forward.accept_failed", { listen: f.info.listen, error: String(e) });
      continue;
    }
    f.conns.add(conn);
    carry(fw, f, conn)
      .catch((e) => log.error("forward.internal_error", { error: String(e), stack: e?.stack }))
      .finally(() => {
        f.conns.delete(conn);
        closeQuietly(conn);
      });
  }
}

async function carry(fw: Forwards, f: Live, conn: Deno.TcpConn) {
  conn.setNoDelay(true);
  const source = formatHostPort({ host: conn.remoteAddr.hostname, port: conn.remoteAddr.port });
  // Read per connection: a reload replaces the identities and the map.
  const deps = fw.deps;
  const identity = deps.rt.defaultIdentity;
  const service = f.spec.service;
  if (!identity) {
    return refused(fw, f, source, "no_identity", "this agent has no socks.default_identity");
  }
  const port = forwardPort(deps.rt.view.cluster, f.spec);
  const opened = await openServiceTunnel(deps, { identity, service, port });
  if (!opened.ok) return refused(fw, f, source, opened.reason, opened.message, identity.id);
  f.info.open++;
  f.info.carried++;
  try {
    await carryTunnel(deps, tcpDuplex(conn), opened, {
      principal: identity.id,
      service,
      source,
    });
  } finally {
    f.info.open--;
  }
}

function refused(
  fw: Forwards,
  f: Live,
  source: string,
  reason: string,
  detail: string,
  principal?: string,
) {
  f.info.refused++;
  fw.deps.metrics.tunnelsFailed.inc({ side: "client", reason });
  if (!fw.logLimiter.take(f.info.listen, Date.now())) return;
  const suppressed = fw.logLimiter.drainRefused(f.info.listen);
  fw.deps.log.warn("forward.refused", {
    listen: f.info.listen,
    service: f.spec.service,
    principal,
    source,
    reason,
    detail,
    ...(suppressed ? { suppressed } : {}),
  });
}

function shut(fw: Forwards, f: Live) {
  fw.live.delete(f.info.listen);
  closeQuietly(f.listener);
  for (const c of f.conns) closeQuietly(c);
  fw.deps.log.info("forward.closed", { listen: f.info.listen, service: f.spec.service });
}

/** By bound address, or as written (`localhost:15432`, `127.0.0.1:0`). */
function find(fw: Forwards, key: string): Live | undefined {
  return fw.live.get(key) ??
    [...fw.live.values()].find((f) => forwardKey(f.spec.listen) === key);
}

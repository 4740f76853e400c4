/**
 * The agent's metrics (flor_ prefix) and its metrics/health HTTP endpoint.
 * Labels are bounded sets: service and node names from cluster.yaml, fixed reason words.
 */
import process from "node:process";
import { constantTimeEqual } from "../lib/binary.ts";
import { Registry } from "../lib/metrics.ts";
import { commit, VERSION } from "../lib/version.ts";
import { ForwardError, type ForwardErrorCode, type ForwardInfo } from "./forward_server.ts";
import { ForwardSpecError } from "./forward_spec.ts";
import { PAC_CONTENT_TYPE, PAC_PATH } from "./pac.ts";
import { parseUdpSnmp } from "../lib/udp_buffer.ts";

/** The host's UDP receive-buffer overflows so far (Linux); undefined where unknown. */
export function udpReceiveErrors(): number | undefined {
  if (Deno.build.os !== "linux") return undefined;
  try {
    return parseUdpSnmp(Deno.readTextFileSync("/proc/net/snmp"))?.receiveBufferErrors;
  } catch {
    return undefined;
  }
}
import { checkHost } from "./http_host.ts";

export function createAgentMetrics() {
  const registry = new Registry();
  const started = Date.now();
  const m = {
    registry,
    tunnelsOpened: registry.counter(
      "flor_tunnels_opened_total",
      "Tunnels opened, by side (client = this agent's SOCKS, server = targets it hosts)",
      ["side", "service"],
    ),
    tunnelsOpen: registry.gauge("flor_tunnels_open", "Tunnels open now", ["side"]),
    tunnelsFailed: registry.counter(
      "flor_tunnels_failed_total",
      "Tunnel requests that did not open, by reason",
      ["side", "reason"],
    ),
    bytes: registry.counter(
      "flor_tunnel_bytes_total",
      "Bytes carried through tunnels, by direction as seen from the SOCKS client / target",
      ["side", "direction"],
    ),
    authFailures: registry.counter(
      "flor_auth_failures_total",
      "Peers refused during client authentication, by reason",
      ["reason"],
    ),
    accessDenied: registry.counter(
      "flor_access_denied_total",
      "Tunnel requests refused by policy",
      ["side", "service"],
    ),
    socksErrors: registry.counter(
      "flor_socks_errors_total",
      "SOCKS5 clients dropped for malformed or unsupported requests",
      ["reason"],
    ),
    socksRefused: registry.counter(
      "flor_socks_connections_refused_total",
      "SOCKS connections closed at accept, unread: source outside allow_cidr, or a cap reached",
      ["reason"],
    ),
    peerConnects: registry.counter(
      "flor_peer_connects_total",
      "QUIC connections made to nodes, by result",
      ["node", "result"],
    ),
    rateLimited: registry.counter(
      "flor_rate_limited_total",
      "Connections or requests refused by a per-source rate limit",
      ["what"],
    ),
    peerBytes: registry.counter(
      "flor_peer_bytes_total",
      "Bytes through this agent's tunnels to each node (rate() of it is the peer's throughput)",
      ["node", "direction"],
    ),
    peerUp: registry.gauge("flor_peer_up", "1 if the connection to the node is up", ["node"]),
    peerRtt: registry.gauge(
      "flor_peer_rtt_seconds",
      "Round-trip time to the node (moving average of PINGs every 2 s)",
      ["node"],
    ),
    reloadFailures: registry.counter(
      "flor_reload_failures_total",
      "Reloads refused (the agent keeps its older configuration; /readyz fails until one succeeds)",
    ),
    quicConnections: registry.gauge(
      "flor_quic_connections",
      "Authenticated QUIC connections open now",
      ["side"],
    ),
  };
  const loopLag = registry.gauge(
    "flor_event_loop_lag_seconds",
    "How late the event loop ran a 20 ms timer over the last 5 s: median, p99 and max",
    ["quantile"],
  );
  const openFds = registry.gauge("flor_open_fds", "Open file descriptors (Linux)");
  registry.collected("flor_heap_used_bytes", "V8 heap in use", () => Deno.memoryUsage().heapUsed);
  registry.collected("flor_cpu_seconds_total", "CPU time used (user + system)", () => {
    const c = process.cpuUsage();
    return (c.user + c.system) / 1e6;
  });
  const restarts = registry.counter(
    "flor_starts_total",
    "Starts of this agent with this state directory, by kind (all, unclean)",
    ["kind"],
  );
  registry.collected(
    "flor_uptime_seconds",
    "Seconds since the agent started",
    () => (Date.now() - started) / 1000,
  );
  registry.collected(
    "flor_resident_memory_bytes",
    "Resident set size",
    () => Deno.memoryUsage().rss,
  );
  // Read at every scrape, so a reload that swaps certificates shows at once and an identity
  // a reload removed leaves no stale series.
  let certificates: () => Iterable<{ id: string; notAfter: Date }> = () => [];
  registry.collected(
    "flor_certificate_expiry_timestamp_seconds",
    "When each certificate this agent presents expires (Unix time), by identity",
    () =>
      [...certificates()].map((c) => ({
        labels: { identity: c.id },
        value: c.notAfter.getTime() / 1000,
      })),
  );
  const resourceHigh = registry.gauge(
    "flor_resource_high",
    "1 while a resource is over its limits.*_warn in flor.yaml (resource.high), else 0",
    ["resource"],
  );
  // UDP buffers (issue 10): what the QUIC sockets got, and the host's overflow counter.
  const udpReceiveBuffer = registry.gauge(
    "flor_udp_receive_buffer_bytes",
    "Receive buffer of this agent's QUIC socket as the kernel granted it, by side",
    ["side"],
  );
  registry.collected(
    "flor_udp_receive_errors_total",
    "UDP datagrams the host dropped for a full receive buffer (Linux RcvbufErrors, whole " +
      "network namespace; rate() above 0 means raise transport.udp_buffer_bytes)",
    () => udpReceiveErrors() ?? [],
  );
  const built = { version: VERSION, commit: commit() };
  registry.collected("flor_build_info", "Version of this agent (value is always 1)", () => [
    { labels: built, value: 1 },
  ]);
  return {
    ...m,
    loopLag,
    openFds,
    restarts,
    resourceHigh,
    udpReceiveBuffer,
    /** Where the expiry gauge finds the certificates in use (the agent's runtime). */
    watchCertificates(f: typeof certificates) {
      certificates = f;
    },
  };
}

export type AgentMetrics = ReturnType<typeof createAgentMetrics>;

export interface HealthSource {
  ready(): boolean;
  /** Re-reads the configuration (POST /control/reload with the control token). */
  reload(): Promise<Error | undefined>;
  /** The secret in the state directory that only the agent's OS user can read. */
  controlToken: string;
  /** The agent's own view for `flor status` (JSON). */
  status(): Record<string, unknown>;
  /** The PAC file for browsers, or why this agent serves none. */
  pac(): { text: string } | { missing: string };
  /** Local port forwards added and removed by `flor forward` (POST/DELETE /control/forward). */
  forwards(): ForwardControl | undefined;
}

export interface ForwardControl {
  /** Throws ForwardSpecError (bad arguments) or ForwardError (refused). */
  add(listen: string, target: string): ForwardInfo & { principal: string };
  remove(listen: string): ForwardInfo;
}

/** Largest /control/forward body: a request is about 60 bytes of JSON (two short strings); 4 KiB
 * leaves room for long names and stops a local client from streaming an endless body. */
export const MAX_CONTROL_BODY_BYTES = 4096;

const FORWARD_STATUS: Record<ForwardErrorCode, number> = {
  no_identity: 409,
  unknown_service: 404,
  not_allowed: 403,
  wrong_port: 403,
  in_use: 409,
  not_found: 404,
};

/** Serves /metrics, /healthz and /readyz. Meant for localhost: it exposes no secrets but
 * does reveal service names and traffic volumes. */
/** The local control endpoint: reload without signals (Windows has no SIGHUP). Only a caller
 * that can read the token file in the agent's state directory — the same OS user, or an
 * administrator — can use it; `flor reload` does that. */
function controlHandler(health: HealthSource) {
  return async function control(req: Request): Promise<Response> {
    if (req.method !== "POST") return new Response("use POST\n", { status: 405 });
    if (!hasToken(req, health)) return wrongToken();
    const err = await health.reload();
    return err
      ? new Response(`reload failed, the old configuration keeps serving: ${err.message}\n`, {
        status: 409,
      })
      : new Response("reloaded\n");
  };
}

function hasToken(req: Request, health: HealthSource): boolean {
  return constantTimeEqual(req.headers.get("authorization") ?? "", `Bearer ${health.controlToken}`);
}

function wrongToken(): Response {
  return new Response("forbidden: wrong control token\n", { status: 403 });
}

/** `flor forward`: POST {listen, service} adds a forward, DELETE {listen} removes one; the
 * same control token as reload, since a forward lends the agent's identity. */
function forwardHandler(health: HealthSource) {
  return async function forward(req: Request): Promise<Response> {
    if (req.method !== "POST" && req.method !== "DELETE") {
      return new Response("use POST or DELETE\n", { status: 405 });
    }
    if (!hasToken(req, health)) return wrongToken();
    const forwards = health.forwards();
    if (!forwards) return new Response("this agent does not forward\n", { status: 409 });
    let body: { listen?: unknown; service?: unknown };
    try {
      body = JSON.parse(await boundedText(req, MAX_CONTROL_BODY_BYTES));
    } catch (e) {
      return new Response(`bad request: ${(e as Error).message}\n`, { status: 400 });
    }
    try {
      const info = req.method === "POST"
        ? forwards.add(String(body.listen ?? ""), String(body.service ?? ""))
        : forwards.remove(String(body.listen ?? ""));
      return Response.json(info);
    } catch (e) {
      if (e instanceof ForwardError) {
        return new Response(e.message + "\n", { status: FORWARD_STATUS[e.code] });
      }
      if (e instanceof ForwardSpecError) return new Response(e.message + "\n", { status: 400 });
      throw e;
    }
  };
}

async function boundedText(req: Request, max: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of req.body ?? new ReadableStream<Uint8Array>()) {
    total += chunk.length;
    if (total > max) throw new RangeError(`body over ${max} bytes`);
    chunks.push(chunk);
  }
  const all = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  return new TextDecoder().decode(all);
}

function pacResponse(health: HealthSource): Response {
  const pac = health.pac();
  if ("missing" in pac) return new Response(`no PAC file: ${pac.missing}\n`, { status: 404 });
  return new Response(pac.text, {
    headers: { "content-type": PAC_CONTENT_TYPE, "cache-control": "no-cache" },
  });
}

export function serveMetrics(
  addr: { host: string; port: number },
  metrics: AgentMetrics,
  health: HealthSource,
  /** Names besides the listening address and localhost that requests may use as Host. */
  allowedHosts: readonly string[] = [],
): Deno.HttpServer<Deno.NetAddr> {
  const control = controlHandler(health);
  const forward = forwardHandler(health);
  const hosts = { listenHost: addr.host, allowedHosts };
  return Deno.serve(
    { hostname: addr.host, port: addr.port, onListen: () => {} },
    function metricsHandler(req) {
      // First, for every route: DNS rebinding (agent/http_host.ts).
      const host = checkHost(req.headers.get("host"), hosts);
      if (!host.ok) return new Response(host.message, { status: host.status });
      const path = new URL(req.url).pathname;
      if (path === "/metrics") {
        return new Response(metrics.registry.render(), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      }
      if (path === "/healthz") return new Response("ok\n");
      if (path === "/status") {
        return new Response(JSON.stringify(health.status(), null, 1) + "\n", {
          headers: { "content-type": "application/json" },
        });
      }
      if (path === "/control/reload") return control(req);
      // Local port forwards and the browsers' PAC file (issue 13).
      if (path === "/control/forward") return forward(req);
      if (path === PAC_PATH) return pacResponse(health);
      if (path === "/readyz") {
        return health.ready()
          ? new Response("ready\n")
          : new Response("not ready\n", { status: 503 });
      }
      return new Response(`not found: try /metrics, /healthz, /readyz, /status, ${PAC_PATH}\n`, {
        status: 404,
      });
    },
  );
}

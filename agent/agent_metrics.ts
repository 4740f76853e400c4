/**
 * The agent's metrics (flor_ prefix) and its metrics/health HTTP endpoint.
 * Labels are bounded sets: service and node names from cluster.yaml, fixed reason words.
 */
import process from "node:process";
import { constantTimeEqual } from "../lib/binary.ts";
import { Registry } from "../lib/metrics.ts";
import { commit, VERSION } from "../lib/version.ts";
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
    "How late the event loop ran a timer at the last sample",
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
  const built = { version: VERSION, commit: commit() };
  registry.collected("flor_build_info", "Version of this agent (value is always 1)", () => [
    { labels: built, value: 1 },
  ]);
  return { ...m, loopLag, openFds, restarts };
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
}

/** Serves /metrics, /healthz and /readyz. Meant for localhost: it exposes no secrets but
 * does reveal service names and traffic volumes. */
/** The local control endpoint: reload without signals (Windows has no SIGHUP). Only a caller
 * that can read the token file in the agent's state directory — the same OS user, or an
 * administrator — can use it; `flor reload` does that. */
function controlHandler(health: HealthSource) {
  return async function control(req: Request): Promise<Response> {
    if (req.method !== "POST") return new Response("use POST\n", { status: 405 });
    const given = req.headers.get("authorization") ?? "";
    if (!constantTimeEqual(given, `Bearer ${health.controlToken}`)) {
      return new Response("forbidden: wrong control token\n", { status: 403 });
    }
    const err = await health.reload();
    return err
      ? new Response(`reload failed, the old configuration keeps serving: ${err.message}\n`, {
        status: 409,
      })
      : new Response("reloaded\n");
  };
}

export function serveMetrics(
  addr: { host: string; port: number },
  metrics: AgentMetrics,
  health: HealthSource,
  /** Names besides the listening address and localhost that requests may use as Host. */
  allowedHosts: readonly string[] = [],
): Deno.HttpServer<Deno.NetAddr> {
  const control = controlHandler(health);
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
      if (path === "/readyz") {
        return health.ready()
          ? new Response("ready\n")
          : new Response("not ready\n", { status: 503 });
      }
      return new Response("not found: try /metrics, /healthz, /readyz, /status\n", {
        status: 404,
      });
    },
  );
}

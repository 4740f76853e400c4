/**
 * The agent's metrics (flor_ prefix), served at /metrics by local_http.ts. Labels are bounded
 * sets: service and node names from cluster.yaml, fixed reason words.
 */
import process from "node:process";
import { Registry } from "../lib/metrics.ts";
import { commit, VERSION } from "../lib/version.ts";
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

export function createAgentMetrics() {
  const registry = new Registry();
  const certificates = certificateExpiry(registry);
  return {
    registry,
    ...tunnelMetrics(registry),
    ...peerMetrics(registry),
    ...processMetrics(registry),
    /** Where the expiry gauge finds the certificates in use (the agent's runtime). */
    watchCertificates: certificates.watch,
  };
}

/** Tunnels, their bytes, and every refusal on either side. */
function tunnelMetrics(registry: Registry) {
  return {
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
    rateLimited: registry.counter(
      "flor_rate_limited_total",
      "Connections or requests refused by a per-source rate limit",
      ["what"],
    ),
  };
}

/** Connections to nodes and the UDP sockets under them. */
function peerMetrics(registry: Registry) {
  const m = {
    peerConnects: registry.counter(
      "flor_peer_connects_total",
      "QUIC connections made to nodes, by result",
      ["node", "result"],
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
    quicConnections: registry.gauge(
      "flor_quic_connections",
      "Authenticated QUIC connections open now",
      ["side"],
    ),
    // UDP buffers (issue 10): what the QUIC sockets got, and the host's overflow counter.
    udpReceiveBuffer: registry.gauge(
      "flor_udp_receive_buffer_bytes",
      "Receive buffer of this agent's QUIC socket as the kernel granted it, by side",
      ["side"],
    ),
  };
  registry.collected(
    "flor_udp_receive_errors_total",
    "UDP datagrams the host dropped for a full receive buffer (Linux RcvbufErrors, whole " +
      "network namespace; rate() above 0 means raise transport.udp_buffer_bytes)",
    () => udpReceiveErrors() ?? [],
  );
  return m;
}

/** The process itself: resources, restarts, reloads, version. */
function processMetrics(registry: Registry) {
  const started = Date.now();
  const m = {
    reloadFailures: registry.counter(
      "flor_reload_failures_total",
      "Reloads refused (the agent keeps its older configuration; /readyz fails until one succeeds)",
    ),
    loopLag: registry.gauge(
      "flor_event_loop_lag_seconds",
      "How late the event loop ran a 20 ms timer over the last 5 s: median, p99 and max",
      ["quantile"],
    ),
    openFds: registry.gauge("flor_open_fds", "Open file descriptors (Linux)"),
    stalls: registry.counter(
      "flor_stalls_total",
      "Times this agent's process did not run for a second or more (agent.stalled)",
    ),
    restarts: registry.counter(
      "flor_starts_total",
      "Starts of this agent with this state directory, by kind (all, unclean)",
      ["kind"],
    ),
    resourceHigh: registry.gauge(
      "flor_resource_high",
      "1 while a resource is over its limits.*_warn in flor.yaml (resource.high), else 0",
      ["resource"],
    ),
  };
  registry.collected("flor_heap_used_bytes", "V8 heap in use", () => Deno.memoryUsage().heapUsed);
  registry.collected("flor_cpu_seconds_total", "CPU time used (user + system)", () => {
    const c = process.cpuUsage();
    return (c.user + c.system) / 1e6;
  });
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
  return m;
}

/** Read at every scrape, so a reload that swaps certificates shows at once and an identity
 * a reload removed leaves no stale series. */
function certificateExpiry(registry: Registry) {
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
  return {
    watch(f: typeof certificates) {
      certificates = f;
    },
  };
}

export type AgentMetrics = ReturnType<typeof createAgentMetrics>;

/**
 * The agent's status document: what `flor status` shows locally (GET /status) and what a node
 * tells the operator over the mesh (a STATUS request, `florctl status`). Built as
 * lib/request_bodies.ts's StatusDocument, the type its readers parse, so both ends agree.
 */
import { recentProblems } from "../lib/log.ts";
import type { StatusDocument } from "../lib/request_bodies.ts";
import { commit, VERSION } from "../lib/version.ts";
import type { AgentMetrics } from "./agent_metrics.ts";
import type { ForwardSet } from "./forward_server.ts";
import type { PeerPool } from "./peer_pool.ts";
import type { ResourceMonitor } from "./resources.ts";
import type { RunState } from "./run_state.ts";
import type { RuntimeSource } from "./runtime.ts";

/** What only the node's QUIC server counts (quic_server.ts passes them in). */
export interface ServerCounts {
  connections: number;
  auth_failures_last_hour: number;
}

/** Everything the document is read from, each created before the document is asked for. */
export interface StatusSources {
  runtime: RuntimeSource;
  run: RunState;
  startedAt: Date;
  metrics: AgentMetrics;
  resources: ResourceMonitor;
  peers: PeerPool;
  forwards?: ForwardSet;
}

/** `now` and `pid` come from the caller (the document is otherwise a pure function of its
 * sources). A client agent has no QUIC server: its counts are zero. */
export function statusDocument(
  s: StatusSources,
  server: ServerCounts | undefined,
  now: Date,
  pid: number,
): StatusDocument {
  const { run, metrics } = s;
  const rt = s.runtime.current();
  const cfg = rt.loaded.config;
  const sum = (f: { get(l: Record<string, string>): number }, labels: Record<string, string>[]) =>
    labels.reduce((a, l) => a + f.get(l), 0);
  return {
    node: cfg.node,
    gateway: cfg.gateway?.name,
    identities: [...rt.identities.keys()],
    version: VERSION,
    commit: commit(),
    config_hash: rt.configHash,
    started_at: s.startedAt.toISOString(),
    uptime_s: Math.round((now.getTime() - s.startedAt.getTime()) / 1000),
    time: now.toISOString(),
    pid,
    starts: run.counters.starts,
    unclean_restarts: run.counters.unclean_restarts,
    previous_exit: run.previous.unclean ? "unclean" : "clean",
    tunnels_open: sum(metrics.tunnelsOpen, [{ side: "server" }, { side: "client" }]),
    connections: server?.connections ?? 0,
    bytes_in: sum(metrics.bytes, [
      { side: "server", direction: "in" },
      { side: "client", direction: "in" },
    ]),
    bytes_out: sum(metrics.bytes, [
      { side: "server", direction: "out" },
      { side: "client", direction: "out" },
    ]),
    auth_failures_last_hour: server?.auth_failures_last_hour ?? 0,
    ...s.resources.last(),
    udp_receive_buffer_bytes:
      metrics.udpReceiveBuffer.get({ side: rt.node ? "server" : "client" }) || undefined,
    udp_buffer_target_bytes: cfg.transport.udp_buffer_bytes,
    peers: s.peers.peers(),
    forwards: s.forwards?.list() ?? [],
    recent_problems: [...recentProblems()],
  };
}

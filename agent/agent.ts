/**
 * One running agent: loads its bundle, then starts what its flor.yaml asks for — the QUIC
 * server (nodes), the SOCKS5 listener (users, and nodes whose services open tunnels) and the
 * metrics endpoint — and reloads the cluster map on demand.
 */
import { principalString } from "../lib/identity.ts";
import { entryOf } from "../lib/cluster.ts";
import { isLoopback, parseHostPort } from "../lib/host_port.ts";
import { dirname, join } from "node:path";
import { type EventLog, eventLog, recentProblems } from "../lib/log.ts";
import { toHex } from "../lib/binary.ts";
import { writeOwnerOnly } from "../lib/atomic_file.ts";
import { isPrivateOrLoopback } from "../lib/cidr.ts";
import { commit, VERSION } from "../lib/version.ts";
import { type AgentMetrics, createAgentMetrics, serveMetrics } from "./agent_metrics.ts";
import { loadAgentConfig, type LoadedAgentConfig } from "./config.ts";
import { createPeerPool, type PeerPool } from "./peer_pool.ts";
import { type QuicServer, startQuicServer } from "./quic_server.ts";
import { BundleError, loadRuntime, type Runtime } from "./runtime.ts";
import { type SocksServer, startSocksServer } from "./socks_server.ts";
import { type ResourceMonitor, startResourceMonitor } from "./resources.ts";
import { openRunState, type RunState } from "./run_state.ts";
import { startMapRefresh } from "./map_refresh.ts";
import { startFlowWatch } from "./flow_watch.ts";
import { type ForwardSet, startForwards } from "./forward_server.ts";
import { configuredForwards, type ForwardSpec, parseForward } from "./forward_spec.ts";
import { pacFile } from "./pac.ts";
import { openClientEndpoint } from "./quic_endpoint.ts";

/** The control token file in the state directory (agent_metrics.ts: /control/reload). */
export const CONTROL_TOKEN_FILE = "control.token";

/** The state directory an agent uses: --state, flor.yaml's state_dir, or state/ beside it. */
export function stateDirOf(loaded: LoadedAgentConfig, override?: string): string {
  if (override) return override;
  const cfg = loaded.config;
  return cfg.state_dir ? loaded.resolve(cfg.state_dir) : join(dirname(loaded.file), "state");
}

/** Addresses given on the command line win over flor.yaml (many agents on one machine). */
export interface ListenOverrides {
  quic?: string;
  socks?: string;
  metrics?: string;
  /** State directory (run marker, restart counters). */
  state?: string;
  /** Forwards to open instead of flor.yaml's (`flor forward --foreground`). */
  forwards?: ForwardSpec[];
}

export interface Agent {
  runtime: Runtime;
  quic?: QuicServer;
  socks?: SocksServer;
  /** Local port forwards; only agents with a default identity (users) have them. */
  forwards?: ForwardSet;
  metricsAddr?: Deno.NetAddr;
  /** Re-reads the cluster map; on error keeps the old one and returns the error. */
  reload(): Promise<Error | undefined>;
  close(): Promise<void>;
}

export async function startAgent(
  loaded: LoadedAgentConfig,
  overrides: ListenOverrides = {},
): Promise<Agent> {
  const log = eventLog("agent");
  const rt = await loadRuntime(loaded);
  const cfg = loaded.config;
  assertServable(rt);
  logRevokedIdentities(log, rt);
  const metrics = createAgentMetrics();
  const listen = {
    quic: overrides.quic ?? cfg.listen.quic,
    socks: overrides.socks ?? cfg.listen.socks,
    metrics: overrides.metrics ?? cfg.listen.metrics,
  };
  const stateDir = stateDirOf(loaded, overrides.state);
  const run = await openRunState(stateDir, VERSION);
  const controlToken = toHex(crypto.getRandomValues(new Uint8Array(32)));
  await writeOwnerOnly(join(stateDir, CONTROL_TOKEN_FILE), controlToken + "\n");
  reportPreviousRun(log, metrics, run, stateDir);
  // The node certificate is kept across reloads (a new one needs a restart): report that one.
  metrics.watchCertificates(() =>
    [...rt.identities.values()].map((i) => i.id === rt.node?.id ? rt.node : i)
  );
  let clientEndpoint: Deno.QuicEndpoint | undefined;
  const peers = createPeerPool(
    rt,
    eventLog("peer"),
    metrics,
    () =>
      clientEndpoint ??= openClientEndpoint(
        cfg.transport.udp_buffer_bytes,
        eventLog("quic"),
        metrics,
      ),
  );
  const resources = startResourceMonitor(() => rt.loaded.config.limits, log, metrics);
  const flows = startFlowWatch(() => rt.loaded.config.limits, eventLog("flow"));
  let quic: QuicServer | undefined;
  let socks: SocksServer | undefined;
  let http: Deno.HttpServer<Deno.NetAddr> | undefined;
  // Tunnels carried by every inbound (SOCKS, forwards), so limits.max_tunnels counts them all.
  const tunnelCounts = { open: 0 };
  const forwards = rt.defaultIdentity
    ? startForwards({ rt, peers, log: eventLog("forward"), metrics, flows, counts: tunnelCounts })
    : undefined;
  let ready = false;
  /** The last reload failed: the agent serves an older configuration than the operator
   * deployed, so /readyz says not ready until a reload succeeds. */
  let reloadFailed = false;
  const startedAt = new Date();
  const status = () =>
    statusDocument({ rt, run, startedAt, metrics, resources, peers, quic, forwards });
  assertListenAddresses(rt, listen);
  // Nodes get their map from deploy; users and gateways keep theirs current from the nodes.
  const mapRefresh = rt.node
    ? undefined
    : startMapRefresh(rt, peers, eventLog("map"), () => agent.reload());
  try {
    if (rt.node) {
      if (!listen.quic) throw new Error("a node needs listen.quic in flor.yaml or --listen");
      quic = startQuicServer(
        rt,
        parseHostPort(listen.quic),
        eventLog("quic"),
        metrics,
        status,
        flows,
      );
    }
    if (listen.socks !== "off") {
      socks = startSocksServer(
        rt,
        parseHostPort(listen.socks),
        peers,
        eventLog("socks"),
        metrics,
        flows,
        tunnelCounts,
        mapRefresh && (() => mapRefresh.onUnknownService()),
      );
    }
    if (listen.metrics !== "off") {
      http = serveMetrics(parseHostPort(listen.metrics), metrics, {
        ready: () => ready && !reloadFailed,
        status,
        reload: () => agent.reload(),
        controlToken,
        pac: () => {
          if (!socks) return { missing: "this agent has no SOCKS5 listener (listen.socks: off)" };
          if (!rt.defaultIdentity || cfg.gateway) {
            return {
              missing: "this agent's SOCKS5 needs a login, which browsers cannot give through " +
                "a PAC file; point browsers at a user's agent",
            };
          }
          return {
            text: pacFile({
              socks: { host: socks.addr.hostname, port: socks.addr.port },
              cluster: cfg.cluster,
              principal: rt.defaultIdentity.id,
            }),
          };
        },
        forwards: () =>
          forwards && {
            add: (listen, target) => ({
              ...forwards.add(parseForward(rt.view.cluster, listen, target), "runtime"),
              principal: rt.defaultIdentity?.id ?? "",
            }),
            remove: (listen) => forwards.remove(listen),
          },
      }, cfg.metrics.allowed_hosts);
    }
    forwards?.configure(overrides.forwards ?? configuredForwards(cfg.cluster, cfg.forwards));
  } catch (e) {
    forwards?.close();
    quic?.close();
    socks?.close();
    await http?.shutdown();
    resources.stop();
    flows.stop();
    mapRefresh?.stop();
    await run.markClean(); // it never served: nothing to report as a crash next time
    throw listenError(e, listen);
  }
  ready = true;
  log.info("agent.started", {
    version: VERSION,
    cluster: cfg.cluster,
    identities: [...rt.identities.keys()],
    quic: quic ? `${quic.addr.hostname}:${quic.addr.port}` : "off",
    socks: socks ? `${socks.addr.hostname}:${socks.addr.port}` : "off",
    metrics: http ? `${http.addr.hostname}:${http.addr.port}` : "off",
    state_dir: stateDir,
    starts: run.counters.starts,
    congestion: cfg.transport.congestion,
  });

  const agent: Agent = {
    runtime: rt,
    quic,
    socks,
    forwards,
    metricsAddr: http?.addr,
    async reload() {
      try {
        await reloadRuntime(rt, log);
        quic?.enforce();
        if (!overrides.forwards) {
          const now = rt.loaded.config;
          forwards?.configure(configuredForwards(now.cluster, now.forwards));
        }
        reloadFailed = false;
        return undefined;
      } catch (e) {
        reloadFailed = true;
        metrics.reloadFailures.inc();
        log.error("config.reload_failed", { file: loaded.file, error: (e as Error).message });
        return e as Error;
      }
    },
    async close() {
      ready = false;
      forwards?.close();
      socks?.close();
      quic?.close();
      peers.closeAll("agent shutting down");
      clientEndpoint?.close();
      resources.stop();
      flows.stop();
      mapRefresh?.stop();
      await http?.shutdown();
      await run.markClean();
      await Deno.remove(join(stateDir, CONTROL_TOKEN_FILE)).catch(() => {});
      log.info("agent.stopped", {});
    },
  };
  return agent;
}

function reportPreviousRun(log: EventLog, metrics: AgentMetrics, run: RunState, stateDir: string) {
  metrics.restarts.inc({ kind: "all" }, run.counters.starts);
  metrics.restarts.inc({ kind: "unclean" }, run.counters.unclean_restarts);
  if (run.previous.stillRunning) {
    log.warn("agent.state_in_use", {
      state_dir: stateDir,
      other_pid: run.previous.pid,
      detail: "another agent runs with this state directory: give each its own (--state)",
    });
  }
  if (run.previous.unclean) {
    log.warn("agent.unclean_restart", {
      previous_pid: run.previous.pid,
      previous_uptime_s: run.previous.uptimeS,
      previous_version: run.previous.version,
      unclean_restarts: run.counters.unclean_restarts,
    });
  }
}

interface StatusSources {
  rt: Runtime;
  run: RunState;
  startedAt: Date;
  metrics: AgentMetrics;
  resources: ResourceMonitor;
  peers: PeerPool;
  quic?: QuicServer;
  forwards?: ForwardSet;
}

/** What `flor status` shows locally and the node tells the operator over the mesh. */
function statusDocument(s: StatusSources): Record<string, unknown> {
  const { rt, run, metrics, quic } = s;
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
    uptime_s: Math.round((Date.now() - s.startedAt.getTime()) / 1000),
    time: new Date().toISOString(),
    pid: Deno.pid,
    starts: run.counters.starts,
    unclean_restarts: run.counters.unclean_restarts,
    previous_exit: run.previous.unclean ? "unclean" : "clean",
    tunnels_open: sum(metrics.tunnelsOpen, [{ side: "server" }, { side: "client" }]),
    connections: quic?.connections.size ?? 0,
    bytes_in: sum(metrics.bytes, [
      { side: "server", direction: "in" },
      { side: "client", direction: "in" },
    ]),
    bytes_out: sum(metrics.bytes, [
      { side: "server", direction: "out" },
      { side: "client", direction: "out" },
    ]),
    auth_failures_last_hour: quic?.authFailuresLastHour() ?? 0,
    ...s.resources.last(),
    udp_receive_buffer_bytes:
      metrics.udpReceiveBuffer.get({ side: rt.node ? "server" : "client" }) || undefined,
    udp_buffer_target_bytes: cfg.transport.udp_buffer_bytes,
    peers: s.peers.peers(),
    forwards: s.forwards?.list() ?? [],
    recent_problems: recentProblems(),
  };
}

/** Addresses that would lend an identity too widely are refused before anything listens. */
function assertListenAddresses(rt: Runtime, listen: { socks: string }) {
  const gw = rt.loaded.config.gateway;
  if (gw && listen.socks !== "off") {
    const { host } = parseHostPort(listen.socks);
    const allowPublic = entryOf(rt.view.cluster.gateways, gw.name)?.allow_public === true;
    if (!allowPublic && !isPrivateOrLoopback(host)) {
      throw new Error(
        `gateway SOCKS address ${listen.socks} is not a LAN (private) address: a gateway lends ` +
          `gateway:${gw.name} to its clients, so it listens publicly only with ` +
          `gateways.${gw.name}.allow_public: true in cluster.yaml`,
      );
    }
  }
  if (listen.socks !== "off" && rt.defaultIdentity) {
    const { host } = parseHostPort(listen.socks);
    if (!isLoopback(host)) {
      throw new Error(
        `SOCKS address ${listen.socks} is not loopback, and this agent lends ` +
          `${rt.defaultIdentity.id} to every client without credentials: listen on 127.0.0.1, ` +
          `or use flor-gw to serve a LAN`,
      );
    }
  }
}

/**
 * Re-reads flor.yaml, the cluster map and the identities, and swaps them into `rt`. Everything
 * is checked before anything is swapped in: on error (thrown) the old configuration serves.
 * A map revoking one of our own identities is applied, that identity dropped (fail closed).
 */
async function reloadRuntime(rt: Runtime, log: EventLog) {
  const next = await loadRuntime(await loadAgentConfig(rt.loaded.file));
  const nextCfg = next.loaded.config;
  const current = rt.loaded.config;
  if (nextCfg.cluster !== current.cluster || nextCfg.node !== current.node) {
    throw new Error(
      `the bundle is now for ${nextCfg.node ?? "a client"} in ` +
        `'${nextCfg.cluster}': restart flor to change what it runs as`,
    );
  }
  const needsRestart = [];
  if (next.node && next.node.certPem !== rt.node?.certPem) needsRestart.push("node certificate");
  if (JSON.stringify(nextCfg.listen) !== JSON.stringify(current.listen)) {
    needsRestart.push("listen");
  }
  // The node identity is kept even when the new map revokes it: the QUIC server is bound to
  // it until a restart, and a restart then refuses to start (assertServable).
  const { node: _keep, ...swap } = next;
  Object.assign(rt, swap);
  log.info("config.reloaded", { config_hash: rt.configHash, revoked: rt.view.revoked.size });
  logRevokedIdentities(log, rt);
  if (needsRestart.length) log.warn("config.restart_needed", { changed: needsRestart });
}

/** An agent needs its own identities: a node its node certificate, anyone at least one. */
function assertServable(rt: Runtime) {
  const revoked = (id: string) => rt.revokedIdentities.find((r) => r.id === id);
  const node = rt.loaded.config.node;
  if (node && !rt.node) {
    const r = revoked(principalString({ kind: "node", name: node }));
    throw new BundleError(
      `the certificate of node:${node} (${r?.cert}, serial ${r?.serial}) is revoked in the ` +
        `cluster map: give this node a new bundle (florctl deploy --node ${node})`,
    );
  }
  if (rt.identities.size === 0) {
    throw new BundleError(
      `every identity of this bundle is revoked in the cluster map ` +
        `(${rt.revokedIdentities.map((r) => r.id).join(", ")}): ask the operator for a new one`,
    );
  }
}

function logRevokedIdentities(log: EventLog, rt: Runtime) {
  for (const r of rt.revokedIdentities) {
    log.warn("identity.revoked", {
      identity: r.id,
      serial: r.serial,
      detail: r.id === rt.node?.id
        ? "the node identity is revoked: it keeps serving until restarted, then refuses to " +
          "start; deploy a new bundle"
        : "dropped: tunnels as this identity are refused until a new bundle is deployed",
    });
  }
}

function listenError(e: unknown, listen: ListenOverrides): Error {
  if (e instanceof Deno.errors.AddrInUse) {
    return new Error(
      `an address is already in use (quic ${
        listen.quic ?? "off"
      }, socks ${listen.socks}, metrics ${listen.metrics}): stop the other program or choose another with --listen/--socks/--metrics`,
    );
  }
  return e as Error;
}

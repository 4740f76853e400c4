/**
 * One running agent: loads its bundle, then starts what its flor.yaml asks for — the QUIC
 * server (nodes), the SOCKS5 listener (users, and nodes whose services open tunnels), local
 * forwards and the metrics endpoint — and reloads its configuration on demand.
 *
 * The runtime lives in a holder (config_source.ts) that a reload replaces; every component
 * gets the holder and subscribes to what it must do on a change: `follows_config` in
 * agent.started and `applied_by` in config.reloaded list them in notification order.
 */
import { principalString } from "../lib/identity.ts";
import { entryOf } from "../lib/cluster.ts";
import { isLoopback, parseHostPort } from "../lib/host_port.ts";
import { dirname, join } from "node:path";
import { type EventLog, eventLog } from "../lib/log.ts";
import { toHex } from "../lib/binary.ts";
import { writeOwnerOnly } from "../lib/atomic_file.ts";
import { isPrivateOrLoopback } from "../lib/cidr.ts";
import { VERSION } from "../lib/version.ts";
import { type AgentMetrics, createAgentMetrics } from "./agent_metrics.ts";
import { serveLocalHttp } from "./local_http.ts";
import { loadAgentConfig, type LoadedAgentConfig } from "./config.ts";
import { createConfigHolder } from "./config_source.ts";
import { logRevokedIdentities, serializedReload } from "./reload.ts";
import { createPeerPool, type PeerPool } from "./peer_pool.ts";
import { type QuicServer, startQuicServer } from "./quic_server.ts";
import {
  BundleError,
  loadRuntime,
  type LocalIdentity,
  type Runtime,
  type RuntimeSource,
} from "./runtime.ts";
import { type SocksServer, startSocksServer } from "./socks_server.ts";
import { type ResourceMonitor, startResourceMonitor } from "./resources.ts";
import { openRunState, type RunState } from "./run_state.ts";
import { type MapRefresh, startMapRefresh } from "./map_refresh.ts";
import { type FlowWatch, startFlowWatch } from "./flow_watch.ts";
import { type ForwardSet, startForwards } from "./forward_server.ts";
import { configuredForwards, type ForwardSpec, parseForward } from "./forward_spec.ts";
import { pacFile } from "./pac.ts";
import { openClientEndpoint } from "./quic_endpoint.ts";
import { watchStalls } from "../lib/stall_watch.ts";
import { stallReporter } from "./stall_report.ts";
import { type ServerCounts, statusDocument, type StatusSources } from "./status_document.ts";

/** The control token file in the state directory (control_endpoint.ts). */
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
  /** The runtime now, and who follows its replacements (config_source.ts). */
  runtime: RuntimeSource;
  quic?: QuicServer;
  socks?: SocksServer;
  /** Local port forwards; only agents with a default identity (users) have them. */
  forwards?: ForwardSet;
  metricsAddr?: Deno.NetAddr;
  /** Re-reads flor.yaml, the cluster map and the identities; on error keeps the old ones
   * and returns the error. Reloads run one at a time, in the order asked. */
  reload(): Promise<Error | undefined>;
  close(): Promise<void>;
}

/** Listen addresses in effect: the command line's, else flor.yaml's. */
type Listen = { quic?: string; socks: string; metrics: string };

export async function startAgent(
  loaded: LoadedAgentConfig,
  overrides: ListenOverrides = {},
): Promise<Agent> {
  const log = eventLog("agent");
  const initial = await loadRuntime(loaded);
  const cfg = loaded.config; // what only a restart changes: cluster, node, listen, transport
  assertServable(initial);
  logRevokedIdentities(log, initial);
  const listen: Listen = {
    quic: overrides.quic ?? cfg.listen.quic,
    socks: overrides.socks ?? cfg.listen.socks,
    metrics: overrides.metrics ?? cfg.listen.metrics,
  };
  assertListenAddresses(initial, listen);
  const runtime = createConfigHolder(initial);
  const metrics = createAgentMetrics();
  const stateDir = stateDirOf(loaded, overrides.state);
  const run = await openRunState(stateDir, VERSION);
  const controlToken = toHex(crypto.getRandomValues(new Uint8Array(32)));
  await writeOwnerOnly(join(stateDir, CONTROL_TOKEN_FILE), controlToken + "\n");
  reportPreviousRun(log, metrics, run, stateDir);
  metrics.watchCertificates(() => presentedCertificates(runtime.current()));
  const base = startBase(runtime, metrics);
  const health = { started: false, reloadFailed: false, failures: metrics.reloadFailures };
  const reload = serializedReload(
    runtime,
    async (current) => await loadRuntime(await loadAgentConfig(current.loaded.file)),
    log,
    health,
  );
  let inbounds: Inbounds;
  try {
    inbounds = await startInbounds({
      runtime,
      listen,
      overrides,
      base,
      metrics,
      controlToken,
      reload,
      status: statusOf({ runtime, run, startedAt: new Date(), metrics, ...base }),
      ready: () => health.started && !health.reloadFailed,
    });
  } catch (e) {
    base.close();
    await run.markClean(); // it never served: nothing to report as a crash next time
    throw listenError(e, listen);
  }
  health.started = true;
  const { quic, socks, http, forwards } = inbounds;
  log.info("agent.started", {
    version: VERSION,
    cluster: cfg.cluster,
    identities: [...initial.identities.keys()],
    quic: quic ? `${quic.addr.hostname}:${quic.addr.port}` : "off",
    socks: socks ? `${socks.addr.hostname}:${socks.addr.port}` : "off",
    metrics: http ? `${http.addr.hostname}:${http.addr.port}` : "off",
    state_dir: stateDir,
    starts: run.counters.starts,
    congestion: cfg.transport.congestion,
    follows_config: runtime.subscribers(),
  });
  return {
    runtime,
    quic,
    socks,
    forwards,
    metricsAddr: http?.addr,
    reload,
    async close() {
      health.started = false;
      await inbounds.close();
      base.close();
      await run.markClean();
      await Deno.remove(join(stateDir, CONTROL_TOKEN_FILE)).catch(() => {});
      log.info("agent.stopped", {});
    },
  };
}

/** The certificates the expiry gauge reports: the node certificate is kept across reloads
 * (a new one needs a restart), so that one. */
function presentedCertificates(rt: Runtime): LocalIdentity[] {
  return [...rt.identities.values()].map((i) => i.id === rt.node?.id ? rt.node : i);
}

/** What runs whatever the agent listens on: the peer pool with its lazily opened client
 * endpoint, and the resource and flow watchers. */
interface Base {
  peers: PeerPool;
  resources: ResourceMonitor;
  flows: FlowWatch;
  close(): void;
}

function startBase(runtime: RuntimeSource, metrics: AgentMetrics): Base {
  const transport = runtime.current().loaded.config.transport;
  let clientEndpoint: Deno.QuicEndpoint | undefined;
  const peers = createPeerPool(
    runtime,
    eventLog("peer"),
    metrics,
    () =>
      clientEndpoint ??= openClientEndpoint(
        transport.udp_buffer_bytes,
        eventLog("quic"),
        metrics,
      ),
  );
  // Limits are read at each sample: a reload's new ones apply from the next.
  const limits = () => runtime.current().loaded.config.limits;
  const resources = startResourceMonitor(limits, eventLog("agent"), metrics);
  watchStalls(stallReporter(eventLog("agent"), metrics));
  const flows = startFlowWatch(limits, eventLog("flow"));
  return {
    peers,
    resources,
    flows,
    close() {
      peers.closeAll("agent shutting down");
      clientEndpoint?.close();
      resources.stop();
      flows.stop();
    },
  };
}

/** The status document for the local endpoint and the node's STATUS replies. */
function statusOf(sources: Omit<StatusSources, "forwards">) {
  return (forwards: ForwardSet | undefined, server: ServerCounts | undefined) =>
    statusDocument({ ...sources, forwards }, server, new Date(), Deno.pid);
}

interface InboundWiring {
  runtime: RuntimeSource;
  listen: Listen;
  overrides: ListenOverrides;
  base: Base;
  metrics: AgentMetrics;
  controlToken: string;
  reload(): Promise<Error | undefined>;
  status: ReturnType<typeof statusOf>;
  ready(): boolean;
}

/** What the agent serves, each started after what it uses. */
interface Inbounds {
  forwards?: ForwardSet;
  mapRefresh?: MapRefresh;
  quic?: QuicServer;
  socks?: SocksServer;
  http?: Deno.HttpServer<Deno.NetAddr>;
  close(): Promise<void>;
}

/** Starts the forwards, map refresh, QUIC server, SOCKS5 listener and local HTTP endpoint.
 * If one fails (an address in use), those already started are closed again. */
async function startInbounds(w: InboundWiring): Promise<Inbounds> {
  const { runtime, listen, overrides, base, metrics } = w;
  const rt = runtime.current();
  const cfg = rt.loaded.config;
  const opened: Inbounds = {
    async close() {
      opened.forwards?.close();
      opened.socks?.close();
      opened.quic?.close();
      opened.mapRefresh?.stop();
      await opened.http?.shutdown();
    },
  };
  try {
    // Tunnels carried by every inbound (SOCKS, forwards), so limits.max_tunnels counts them all.
    const counts = { open: 0 };
    const deps = { peers: base.peers, metrics, flows: base.flows, counts };
    const forwards = opened.forwards = rt.defaultIdentity
      ? startForwards(runtime, { ...deps, log: eventLog("forward") }, !overrides.forwards)
      : undefined;
    // Nodes get their map from deploy; users and gateways keep theirs current from the nodes.
    const mapRefresh = opened.mapRefresh = rt.node
      ? undefined
      : startMapRefresh(runtime, base.peers, eventLog("map"), w.reload);
    let quic: QuicServer | undefined;
    if (rt.node) {
      if (!listen.quic) throw new Error("a node needs listen.quic in flor.yaml or --listen");
      const status = (server: ServerCounts) => w.status(forwards, server);
      quic = opened.quic = startQuicServer(
        runtime,
        parseHostPort(listen.quic),
        eventLog("quic"),
        metrics,
        status,
        base.flows,
      );
    }
    const socks = opened.socks = listen.socks === "off" ? undefined : startSocksServer(
      runtime,
      parseHostPort(listen.socks),
      base.peers,
      eventLog("socks"),
      metrics,
      base.flows,
      counts,
      mapRefresh && (() => mapRefresh.onUnknownService()),
    );
    if (listen.metrics !== "off") {
      opened.http = serveLocalHttp(parseHostPort(listen.metrics), metrics, {
        ready: w.ready,
        status: () => w.status(forwards, quic && serverCounts(quic)),
        reload: w.reload,
        controlToken: w.controlToken,
        pac: () => pacFor(runtime.current(), socks),
        forwards: () => forwards && forwardControl(runtime, forwards),
      }, cfg.metrics.allowed_hosts);
    }
    forwards?.configure(overrides.forwards ?? configuredForwards(cfg.cluster, cfg.forwards));
  } catch (e) {
    await opened.close();
    throw e;
  }
  return opened;
}

function serverCounts(quic: QuicServer): ServerCounts {
  return {
    connections: quic.connections.size,
    auth_failures_last_hour: quic.authFailuresLastHour(),
  };
}

/** The PAC file for browsers, or why this agent serves none. */
function pacFor(rt: Runtime, socks: SocksServer | undefined) {
  if (!socks) return { missing: "this agent has no SOCKS5 listener (listen.socks: off)" };
  if (!rt.defaultIdentity || rt.loaded.config.gateway) {
    return {
      missing: "this agent's SOCKS5 needs a login, which browsers cannot give through " +
        "a PAC file; point browsers at a user's agent",
    };
  }
  return {
    text: pacFile({
      socks: { host: socks.addr.hostname, port: socks.addr.port },
      cluster: rt.loaded.config.cluster,
      principal: rt.defaultIdentity.id,
    }),
  };
}

/** `flor forward` on the running agent (POST/DELETE /control/forward). */
function forwardControl(runtime: RuntimeSource, forwards: ForwardSet) {
  return {
    add: (listen: string, target: string) => {
      const rt = runtime.current();
      return {
        ...forwards.add(parseForward(rt.view.cluster, listen, target), "runtime"),
        principal: rt.defaultIdentity?.id ?? "",
      };
    },
    remove: (listen: string) => forwards.remove(listen),
  };
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

/** Addresses that would lend an identity too widely are refused before anything listens. */
function assertListenAddresses(rt: Runtime, listen: Listen) {
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

function listenError(e: unknown, listen: Listen): Error {
  if (e instanceof Deno.errors.AddrInUse) {
    return new Error(
      `an address is already in use (quic ${
        listen.quic ?? "off"
      }, socks ${listen.socks}, metrics ${listen.metrics}): stop the other program or choose another with --listen/--socks/--metrics`,
    );
  }
  return e as Error;
}

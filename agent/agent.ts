/**
 * One running agent: loads its bundle, then starts what its flor.yaml asks for — the QUIC
 * server (nodes), the SOCKS5 listener (users, and nodes whose services open tunnels) and the
 * metrics endpoint — and reloads the cluster map on demand.
 */
import { entryOf, parseHostPort } from "../lib/cluster.ts";
import { dirname, join } from "node:path";
import { eventLog, recentProblems } from "../lib/log.ts";
import { toHex } from "../lib/binary.ts";
import { writeOwnerOnly } from "../lib/atomic_file.ts";
import { isLoopback } from "../lib/net_addr.ts";
import { isPrivateOrLoopback } from "../lib/cidr.ts";
import { commit, VERSION } from "../lib/version.ts";
import { createAgentMetrics, serveMetrics } from "./agent_metrics.ts";
import { loadAgentConfig, type LoadedAgentConfig } from "./config.ts";
import { createPeerPool } from "./peer_pool.ts";
import { type QuicServer, startQuicServer } from "./quic_server.ts";
import { loadRuntime, type Runtime } from "./runtime.ts";
import { type SocksServer, startSocksServer } from "./socks_server.ts";
import { startResourceMonitor } from "./resources.ts";
import { openRunState } from "./run_state.ts";
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
  const startedAt = new Date();
  const sum = (f: { get(l: Record<string, string>): number }, labels: Record<string, string>[]) =>
    labels.reduce((a, l) => a + f.get(l), 0);
  /** What `flor status` shows locally and the node tells the operator over the mesh. */
  function status(): Record<string, unknown> {
    const r = resources.last();
    return {
      node: cfg.node,
      gateway: cfg.gateway?.name,
      identities: [...rt.identities.keys()],
      version: VERSION,
      commit: commit(),
      config_hash: rt.configHash,
      started_at: startedAt.toISOString(),
      uptime_s: Math.round((Date.now() - startedAt.getTime()) / 1000),
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
      ...r,
      udp_receive_buffer_bytes:
        metrics.udpReceiveBuffer.get({ side: rt.node ? "server" : "client" }) || undefined,
      udp_buffer_target_bytes: cfg.transport.udp_buffer_bytes,
      peers: peers.peers(),
      forwards: forwards?.list() ?? [],
      recent_problems: recentProblems(),
    };
  }
  const gw = cfg.gateway;
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
        ready: () => ready,
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
      });
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
      // Everything is re-read and checked before anything is swapped in: a broken file
      // leaves the old configuration serving.
      try {
        const next = await loadRuntime(await loadAgentConfig(loaded.file));
        const nextCfg = next.loaded.config;
        const current = rt.loaded.config;
        if (nextCfg.cluster !== cfg.cluster || nextCfg.node !== cfg.node) {
          throw new Error(
            `the bundle is now for ${nextCfg.node ?? "a client"} in ` +
              `'${nextCfg.cluster}': restart flor to change what it runs as`,
          );
        }
        const needsRestart = [];
        if (next.node && next.node.certPem !== rt.node?.certPem) {
          needsRestart.push("node certificate");
        }
        if (JSON.stringify(nextCfg.listen) !== JSON.stringify(current.listen)) {
          needsRestart.push("listen");
        }
        const { node: _keep, ...swap } = next;
        Object.assign(rt, swap);
        quic?.enforce();
        if (!overrides.forwards) {
          forwards?.configure(configuredForwards(nextCfg.cluster, nextCfg.forwards));
        }
        log.info("config.reloaded", { config_hash: rt.configHash, revoked: rt.view.revoked.size });
        if (needsRestart.length) {
          log.warn("config.restart_needed", { changed: needsRestart });
        }
        return undefined;
      } catch (e) {
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

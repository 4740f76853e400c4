/**
 * One running agent: loads its bundle, then starts what its flor.yaml asks for — the QUIC
 * server (nodes), the SOCKS5 listener (users, and nodes whose services open tunnels) and the
 * metrics endpoint — and reloads the cluster map on demand.
 */
import { parseHostPort } from "../lib/cluster.ts";
import { eventLog } from "../lib/log.ts";
import { isLoopback } from "../lib/net_addr.ts";
import { commit, VERSION } from "../lib/version.ts";
import { createAgentMetrics, serveMetrics } from "./agent_metrics.ts";
import { loadAgentConfig, type LoadedAgentConfig } from "./config.ts";
import { createPeerPool } from "./peer_pool.ts";
import { type QuicServer, startQuicServer } from "./quic_server.ts";
import { loadRuntime, type Runtime } from "./runtime.ts";
import { type SocksServer, startSocksServer } from "./socks_server.ts";

/** Addresses given on the command line win over flor.yaml (many agents on one machine). */
export interface ListenOverrides {
  quic?: string;
  socks?: string;
  metrics?: string;
}

export interface Agent {
  runtime: Runtime;
  quic?: QuicServer;
  socks?: SocksServer;
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
  const peers = createPeerPool(rt, eventLog("peer"), metrics);
  let quic: QuicServer | undefined;
  let socks: SocksServer | undefined;
  let http: Deno.HttpServer<Deno.NetAddr> | undefined;
  let ready = false;
  const startedAt = new Date();
  function status(): Record<string, unknown> {
    return {
      node: cfg.node,
      version: VERSION,
      commit: commit(),
      config_hash: rt.configHash,
      started_at: startedAt.toISOString(),
      uptime_s: Math.round((Date.now() - startedAt.getTime()) / 1000),
      pid: Deno.pid,
      tunnels_open: metrics.tunnelsOpen.get({ side: "server" }) +
        metrics.tunnelsOpen.get({ side: "client" }),
      connections: quic?.connections.size ?? 0,
      rss_bytes: Deno.memoryUsage().rss,
      time: new Date().toISOString(),
    };
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
  try {
    if (rt.node) {
      if (!listen.quic) throw new Error("a node needs listen.quic in flor.yaml or --listen");
      quic = startQuicServer(rt, parseHostPort(listen.quic), eventLog("quic"), metrics, status);
    }
    if (listen.socks !== "off") {
      socks = startSocksServer(rt, parseHostPort(listen.socks), peers, eventLog("socks"), metrics);
    }
    if (listen.metrics !== "off") {
      http = serveMetrics(parseHostPort(listen.metrics), metrics, { ready: () => ready });
    }
  } catch (e) {
    quic?.close();
    socks?.close();
    await http?.shutdown();
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
  });

  return {
    runtime: rt,
    quic,
    socks,
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
      socks?.close();
      quic?.close();
      peers.closeAll("agent shutting down");
      await http?.shutdown();
      log.info("agent.stopped", {});
    },
  };
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

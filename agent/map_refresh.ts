/**
 * Users' and gateways' agents keep their cluster map current without a new bundle: every
 * `map_refresh_s`, and when a client names a `*.flor` service the map does not know, they ask
 * a node for its map, and adopt it if the cluster CA signed it and it is newer than theirs
 * (lib/map_signature.ts). A node that cannot answer is not the end of it: the next one is
 * asked (nodes already connected first). The new map is written over the bundle's copy and
 * loaded with the ordinary reload, so a service the operator added (and deployed to the
 * nodes) is reachable at once for a client that asks for it, and for everyone within a minute.
 */
import { writeFileAtomic } from "../lib/atomic_file.ts";
import { loadCluster } from "../lib/cluster.ts";
import { exchange } from "../lib/exchange.ts";
import type { EventLog } from "../lib/log.ts";
import { decodeMapSignature, MapSignatureError, verifyClusterMap } from "../lib/map_signature.ts";
import { RateLimiter } from "../lib/rate_limit.ts";
import { type MapReply, MapReplySchema } from "../lib/request_bodies.ts";
import { encodeMapRequest, TunnelStatus } from "../lib/tunnel_header.ts";
import type { PeerPool } from "./peer_pool.ts";
import type { LocalIdentity, RuntimeSource } from "./runtime.ts";

/** How long a node may take to send its map (a few hundred KB at most, one frame). */
export const MAP_REPLY_TIMEOUT_MS = 5_000;
/** Nodes asked in one round before giving up until the next: enough to get past one or two
 * that are down, few enough that a round stays short. */
export const MAP_NODES_PER_ROUND = 3;
/** Refreshes for unknown names: one at once, then at most one per 5 s, so a client that
 * keeps asking for a name that does not exist costs the nodes almost nothing. */
export const MISS_REFRESHES_PER_S = 0.2;
/** How long a SOCKS request for an unknown name waits for that refresh before 0x04: a
 * connected node answers in a round trip; a round that has to dial a node takes longer. */
export const MISS_REFRESH_WAIT_MS = 3_000;

/** Pure: adopt an offered map only if it is strictly newer than the one we run. */
export function isNewer(currentIssuedAt: number | undefined, offeredIssuedAt: number): boolean {
  return offeredIssuedAt > (currentIssuedAt ?? 0);
}

/** Pure: which nodes to ask, in order: the ones we are connected to, then the rest of the
 * map (sorted, so every agent walks it the same way). */
export function nodesToAsk(
  peers: { node: string; identity: string; up: boolean }[],
  mapNodes: string[],
  fallbackIdentity: string | undefined,
  max = MAP_NODES_PER_ROUND,
): { node: string; identity: string }[] {
  const out: { node: string; identity: string }[] = [];
  const seen = new Set<string>();
  for (const p of peers) {
    if (!p.up || seen.has(p.node) || !mapNodes.includes(p.node)) continue;
    seen.add(p.node);
    out.push({ node: p.node, identity: p.identity });
  }
  if (fallbackIdentity) {
    for (const node of [...mapNodes].sort()) {
      if (!seen.has(node)) out.push({ node, identity: fallbackIdentity });
    }
  }
  return out.slice(0, max);
}

function issuedAt(signature: string | undefined): number | undefined {
  if (!signature) return undefined;
  try {
    return decodeMapSignature(signature).issued_at;
  } catch {
    return undefined;
  }
}

async function fetchMap(conn: Deno.QuicConn, node: string): Promise<MapReply> {
  const stream = await conn.createBidirectionalStream();
  const { reply, body } = await exchange(stream, encodeMapRequest(), {
    timeoutMs: MAP_REPLY_TIMEOUT_MS,
    body: MapReplySchema,
    what: `map request to ${node}`,
  });
  if (reply.status !== TunnelStatus.OK || !body) throw new Error(`${node}: ${reply.message}`);
  return body;
}

export interface MapRefresh {
  /** A client named a service the map does not know: refresh (rate-limited) and say whether
   * a newer map was adopted, within MISS_REFRESH_WAIT_MS. */
  onUnknownService(): Promise<boolean>;
  stop(): void;
}

export function startMapRefresh(
  source: RuntimeSource,
  peers: PeerPool,
  log: EventLog,
  reload: () => Promise<Error | undefined>,
): MapRefresh {
  let running: Promise<boolean> | undefined;
  const missLimiter = new RateLimiter({ ratePerSecond: MISS_REFRESHES_PER_S, burst: 1 });

  /** Asks one node; true if its map was newer and is now ours. */
  async function askNode(identity: LocalIdentity, node: string): Promise<boolean> {
    const conn = await peers.connection(identity, node);
    const offered = await fetchMap(conn, node);
    const rt = source.current();
    const sig = decodeMapSignature(offered.signature);
    if (!isNewer(issuedAt(rt.view.signature), sig.issued_at)) return false;
    await verifyClusterMap(offered.map, sig, rt.ca);
    const cluster = loadCluster(offered.map, `cluster map from ${node}`);
    if (cluster.cluster !== rt.view.cluster.cluster) {
      throw new MapSignatureError(`the map is for cluster '${cluster.cluster}'`);
    }
    const path = rt.loaded.resolve(rt.loaded.config.cluster_map);
    // Map first: after a crash in between, the older signature makes the next round fetch
    // the map again, where the other order would leave a new signature on an old map.
    await writeFileAtomic(path, offered.map);
    await writeFileAtomic(`${path}.sig`, offered.signature);
    const err = await reload();
    if (err) throw err;
    log.info("map.updated", { from: node, issued_at: new Date(sig.issued_at).toISOString() });
    return true;
  }

  async function round(why: "interval" | "unknown_service"): Promise<boolean> {
    const rt = source.current();
    const fallback = rt.defaultIdentity ?? [...rt.identities.values()][0];
    // On the timer only nodes we are connected to are asked: no connections just for this.
    const ask = nodesToAsk(
      peers.peers(),
      Object.keys(rt.view.cluster.nodes),
      why === "unknown_service" ? fallback?.id : undefined,
    );
    for (const { node, identity } of ask) {
      const id = rt.identities.get(identity);
      if (!id) continue;
      try {
        return await askNode(id, node);
      } catch (e) {
        // A map that fails its signature is news even if another node has a good one.
        log.warn("map.refresh_failed", { from: node, error: (e as Error).message, trigger: why });
      }
    }
    return false;
  }

  function refresh(why: "interval" | "unknown_service"): Promise<boolean> {
    if (running) return running;
    running = round(why).finally(() => running = undefined);
    return running;
  }

  let intervalMs = 0;
  let timer: ReturnType<typeof setInterval> | undefined;
  function follow(s: number) {
    if (s * 1000 === intervalMs) return;
    intervalMs = s * 1000;
    clearInterval(timer);
    timer = setInterval(() => refresh("interval"), intervalMs);
    Deno.unrefTimer(timer);
  }
  follow(source.current().loaded.config.map_refresh_s);
  // A reload may change map_refresh_s; an unchanged one keeps the timer's phase, so reloads
  // (one follows every refresh that adopts a map) never push the next round back.
  const unsubscribe = source.onChange("map_refresh", (next) => {
    follow(next.loaded.config.map_refresh_s);
  });
  return {
    onUnknownService() {
      if (!running && !missLimiter.take("miss", Date.now())) return Promise.resolve(false);
      let wait: ReturnType<typeof setTimeout> | undefined;
      return Promise.race([
        refresh("unknown_service"),
        new Promise<boolean>((resolve) =>
          wait = setTimeout(() => resolve(false), MISS_REFRESH_WAIT_MS)
        ),
      ]).finally(() => clearTimeout(wait));
    },
    stop() {
      unsubscribe();
      clearInterval(timer);
    },
  };
}

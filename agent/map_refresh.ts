/**
 * Users' and gateways' agents keep their cluster map current without a new bundle: every
 * `map_refresh_s` they ask a node they are connected to for its map, and adopt it if the
 * cluster CA signed it and it is newer than theirs (lib/map_signature.ts). The new map is
 * written over the bundle's copy and loaded with the ordinary reload, so a service the operator
 * added (and deployed to the nodes) becomes reachable for everyone within a minute.
 */
import { writeFileAtomic } from "../lib/atomic_file.ts";
import { frame, MAX_FRAME_BYTES } from "../lib/binary.ts";
import { loadCluster } from "../lib/cluster.ts";
import type { EventLog } from "../lib/log.ts";
import { decodeMapSignature, MapSignatureError, verifyClusterMap } from "../lib/map_signature.ts";
import { StreamBuffer } from "../lib/stream_buffer.ts";
import {
  decodeTunnelReply,
  encodeMapRequest,
  MAX_TUNNEL_REPLY_BYTES,
  TunnelStatus,
} from "../lib/tunnel_header.ts";
import type { PeerPool } from "./peer_pool.ts";
import type { Runtime } from "./runtime.ts";

/** Pure: adopt an offered map only if it is strictly newer than the one we run. */
export function isNewer(currentIssuedAt: number | undefined, offeredIssuedAt: number): boolean {
  return offeredIssuedAt > (currentIssuedAt ?? 0);
}

function issuedAt(signature: string | undefined): number | undefined {
  if (!signature) return undefined;
  try {
    return decodeMapSignature(signature).issued_at;
  } catch {
    return undefined;
  }
}

async function fetchMap(conn: Deno.QuicConn) {
  const stream = await conn.createBidirectionalStream();
  const w = stream.writable.getWriter();
  await w.write(frame(encodeMapRequest()));
  await w.close();
  const buf = new StreamBuffer(stream.readable);
  const reply = decodeTunnelReply(await buf.readFrame(MAX_TUNNEL_REPLY_BYTES));
  if (reply.status !== TunnelStatus.OK) throw new Error(reply.message);
  const body = JSON.parse(new TextDecoder().decode(await buf.readFrame(MAX_FRAME_BYTES)));
  if (typeof body?.map !== "string" || typeof body?.signature !== "string") {
    throw new Error("malformed map reply");
  }
  return body as { map: string; signature: string };
}

export function startMapRefresh(
  rt: Runtime,
  peers: PeerPool,
  log: EventLog,
  reload: () => Promise<Error | undefined>,
): { stop(): void } {
  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const up = peers.peers().find((p) => p.up);
      if (!up) return; // nobody to ask: keep the map we have
      const identity = rt.identities.get(up.identity);
      if (!identity) return;
      const conn = await peers.connection(identity, up.node);
      const offered = await fetchMap(conn);
      const sig = decodeMapSignature(offered.signature);
      if (!isNewer(issuedAt(rt.view.signature), sig.issued_at)) return;
      await verifyClusterMap(offered.map, sig, rt.ca);
      const cluster = loadCluster(offered.map, `cluster map from ${up.node}`);
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
      log.info("map.updated", { from: up.node, issued_at: new Date(sig.issued_at).toISOString() });
    } catch (e) {
      log.warn("map.refresh_failed", { error: (e as Error).message });
    } finally {
      busy = false;
    }
  }
  const interval = rt.loaded.config.map_refresh_s * 1000;
  const timer = setInterval(refresh, interval);
  Deno.unrefTimer(timer);
  return { stop: () => clearInterval(timer) };
}

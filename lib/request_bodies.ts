/**
 * The JSON bodies of florete/1 replies (tunnel_header.ts): what a node sends after an OK
 * reply to a STATUS or MAP request. One schema per body, shared by the side that builds it and
 * the sides that read it, so a renamed field fails the type check and a malformed reply is a
 * named error (lib/exchange.ts). A PING reply has no body (the OK reply itself is the answer
 * the client times), nor has a tunnel's.
 */
import { z } from "zod";

/** MAP: the cluster map as the node runs it and the CA's signature on it (map_signature.ts). */
export const MapReplySchema = z.object({
  map: z.string(),
  signature: z.string(),
});
export type MapReply = z.infer<typeof MapReplySchema>;

/** One (identity, node) pair as the client side sees it (agent/peer_pool.ts). */
export const PeerStateSchema = z.object({
  node: z.string(),
  identity: z.string(),
  up: z.boolean(),
  since: z.number(),
  rttMs: z.number().optional(),
  lastError: z.string().optional(),
  connects: z.number(),
  /** QUIC connections open to the node now (more than one past one connection's streams). */
  connections: z.number().optional(),
});
export type PeerStateBody = z.infer<typeof PeerStateSchema>;

/** STATUS: the agent's status document (`flor status`, `florctl status`). Fields an older or
 * newer agent adds are kept (loose), the ones every reader relies on are required. */
export const StatusSchema = z.looseObject({
  node: z.string().optional(),
  version: z.string(),
  commit: z.string(),
  config_hash: z.string(),
  started_at: z.string(),
  uptime_s: z.number(),
  time: z.string(),
  pid: z.number(),
  tunnels_open: z.number(),
  connections: z.number(),
  rss_bytes: z.number(),
  peers: z.array(PeerStateSchema).optional(),
});
export type StatusBody = z.infer<typeof StatusSchema>;

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

/** One local port forward as `flor status` shows it (agent/forward_server.ts). */
export const ForwardStateSchema = z.object({
  listen: z.string(),
  target: z.string(),
  service: z.string(),
  origin: z.enum(["config", "runtime"]),
  open: z.number(),
  carried: z.number(),
  refused: z.number(),
});

/** STATUS: every field of the agent's status document (agent/status_document.ts builds it as
 * exactly this type, so a misspelt or renamed field fails the type check there). */
const StatusFieldsSchema = z.object({
  node: z.string().optional(),
  gateway: z.string().optional(),
  identities: z.array(z.string()).optional(),
  version: z.string(),
  commit: z.string(),
  config_hash: z.string(),
  started_at: z.string(),
  uptime_s: z.number(),
  time: z.string(),
  pid: z.number(),
  starts: z.number().optional(),
  unclean_restarts: z.number().optional(),
  previous_exit: z.enum(["clean", "unclean"]).optional(),
  tunnels_open: z.number(),
  connections: z.number(),
  bytes_in: z.number().optional(),
  bytes_out: z.number().optional(),
  auth_failures_last_hour: z.number().optional(),
  rss_bytes: z.number(),
  heap_used_bytes: z.number().optional(),
  cpu_seconds: z.number().optional(),
  event_loop_lag_ms: z.number().optional(),
  open_fds: z.number().optional(),
  udp_receive_errors: z.number().optional(),
  udp_receive_errors_last_min: z.number().optional(),
  udp_receive_buffer_bytes: z.number().optional(),
  udp_buffer_target_bytes: z.number().optional(),
  peers: z.array(PeerStateSchema).optional(),
  forwards: z.array(ForwardStateSchema).optional(),
  recent_problems: z.array(z.record(z.string(), z.unknown())).optional(),
});

/** What an agent sends: exactly the fields above. */
export type StatusDocument = z.infer<typeof StatusFieldsSchema>;

/** STATUS as read: fields an older or newer agent adds are kept (loose); the ones every reader
 * relies on are required. */
export const StatusSchema = StatusFieldsSchema.loose();
export type StatusBody = z.infer<typeof StatusSchema>;

/**
 * Constants of the florete/1 protocol spoken over QUIC between agents.
 *
 * A connection carries, in order: one auth stream (client → server auth message, server →
 * client auth reply, see auth.ts), then one bidirectional stream per tunnelled TCP connection
 * (tunnel_header.ts). The server accepts no tunnel stream before the auth stream succeeded.
 */

export const ALPN = "florete/1";

/** QUIC application close codes. Distinct per cause so both ends' logs say why. */
export const CloseCode = {
  /** Orderly shutdown or idle connection dropped by its owner. */
  NORMAL: 0x0,
  /** The auth message was malformed, or its certificate/signature/freshness was rejected. */
  AUTH_DENIED: 0x101,
  /** No valid auth message arrived within AUTH_TIMEOUT_MS. */
  AUTH_TIMEOUT: 0x102,
  /** The peer's certificate was revoked by a reload while the connection was open. */
  REVOKED: 0x103,
  /** The peer broke the stream protocol (e.g. a tunnel stream before auth). */
  PROTOCOL: 0x104,
  /** The agent is shutting down. */
  SHUTDOWN: 0x105,
  /** The source opened too many connections too fast; it may retry later. */
  RATE_LIMITED: 0x106,
} as const;

/** How long a server waits for the auth message after the QUIC handshake. */
export const AUTH_TIMEOUT_MS = 5_000;

/** Freshness window of an auth message timestamp, either side of the server clock. */
export const AUTH_WINDOW_MS = 60_000;

/** Maximum tunnels one QUIC connection may carry at once (each is one bidirectional stream).
 * Deno's default is 100, tight for a browser on a busy intranet page. Deno 2.9.6 reserves
 * memory per connection in proportion to this (measured: ~66 KB at 256, ~380 KB at 4096),
 * which an unauthenticated flood multiplies, so it stays modest. */
export const MAX_STREAMS_PER_CONNECTION = 256;

/** QUIC keep-alive: every second both ways, so NAT and firewall state stays fresh and the
 * idle timer below never runs down on a quiet but healthy connection. */
export const KEEP_ALIVE_MS = 1_000;
/** QUIC idle timeout (each side uses the smaller of both ends'): how long an agent that does
 * not run at all (descheduled, a laptop's short sleep, a GC pause) keeps its connections.
 * The one-hour soak at load 25-41 had user agents stall 1-4.2 s, and the 2 s it was then
 * cut their idle tunnels to healthy nodes: the node heard nothing for 2 s, and quinn, once
 * the stalled client runs again, may fire its own idle timer before reading the datagrams
 * waiting in the socket (its connection driver checks timers before the endpoint task has
 * delivered them). Dead nodes are not detected by this but by pings every second
 * (agent/peer_pool.ts: peer.down within 2.6 s); this only bounds how long the tunnels of a
 * node that died and did not come back wait before they are reset. */
export const IDLE_TIMEOUT_MS = 10_000;

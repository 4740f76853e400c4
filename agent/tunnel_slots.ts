/**
 * Where the next tunnel to a node goes, as a pure decision over how many tunnels each open
 * connection to it carries: on the first connection with a free tunnel slot; else on a new
 * connection while there may be more; else it waits for a slot. agent/peer_pool.ts applies it.
 *
 * Each connection keeps CONTROL_STREAMS of its MAX_STREAMS_PER_CONNECTION for control requests
 * (RTT pings, map refresh, status), so they never compete with tunnels for a slot.
 */
import { MAX_STREAMS_PER_CONNECTION } from "../lib/protocol.ts";

/** Stream slots of each connection kept for control requests (a ping, a map refresh, a
 * status request at once, with room to spare): tunnels never take them. */
export const CONTROL_STREAMS = 8;
export const TUNNEL_STREAMS_PER_CONNECTION = MAX_STREAMS_PER_CONNECTION - CONTROL_STREAMS;
/** Connections to one node per identity: 16 × 248 = 3,968 tunnels before one has to wait,
 * past the node's default max_tunnels_per_principal (4,096 with some refused for capacity
 * first). Each costs ~66 KB of native memory at each end (lib/protocol.ts), so a runaway
 * client costs a node ~1 MB of connections at most. */
export const MAX_CONNECTIONS_PER_PEER = 16;

export type Placement =
  | { kind: "take"; connection: number }
  | { kind: "open" }
  | { kind: "wait" };

/** `tunnels[i]`: tunnels on open connection i (oldest first); `opening`: connections being
 * made now. Filling the oldest first lets the newest drain and close when idle. */
export function placeTunnel(
  tunnels: readonly number[],
  opening: number,
  maxConnections = MAX_CONNECTIONS_PER_PEER,
): Placement {
  const i = tunnels.findIndex((n) => n < TUNNEL_STREAMS_PER_CONNECTION);
  if (i >= 0) return { kind: "take", connection: i };
  if (tunnels.length + opening < maxConnections) return { kind: "open" };
  return { kind: "wait" };
}

/**
 * The node's decisions about connections that have not authenticated yet: which handshakes
 * to take on, which sources to cut, what a stream means before auth, and whether a verified
 * certificate names someone the cluster map still lists. Pure: counts, config and `now`
 * in, decisions out; agent/quic_server.ts applies them to sockets.
 *
 * What an unauthenticated peer may cost is bounded here: one pending slot (out of
 * MAX_PENDING_HANDSHAKES, at most MAX_PENDING_PER_SOURCE per address), one auth stream of
 * at most MAX_AUTH_MESSAGE_BYTES, for at most AUTH_TIMEOUT_MS. A second stream before auth
 * succeeds ends the connection, so a peer without credentials cannot park data in streams.
 */
import type { Cluster } from "../lib/cluster.ts";
import { hasPrincipal } from "../lib/cluster.ts";
import { type Principal, principalString } from "../lib/identity.ts";
import { Counter, RateLimiter } from "../lib/rate_limit.ts";

/** Unauthenticated connections held at once; past it new handshakes are refused outright.
 * Each costs ~60 KB until its 5 s auth limit (lib/memory.ts), so this bounds a distributed
 * flood to ~15 MB; 256 is far above the handful of peers that reconnect together. */
export const MAX_PENDING_HANDSHAKES = 256;

/** Connections one source address may have waiting for auth. A real agent has one per
 * identity and node, and an office behind one NAT address reconnecting together (10-20
 * users) authenticates each in a few ms; 16 lets 16 addresses, not 3, fill the table above
 * (issue 11: three sources at 20 connections/s took all 256 slots). */
export const MAX_PENDING_PER_SOURCE = 16;

export interface SourceBudget {
  /** New connections per second from one address (limits.connections_per_source_per_s). */
  ratePerSecond: number;
  burst: number;
}

export type SourceDecision =
  | { admit: true }
  | { admit: false; what: "connection" | "pending_per_source"; reason: string };

/** Pending-auth slots and per-source budgets of one node. */
export class PendingAuth {
  #total = 0;
  #bySource = new Counter();
  #rate: RateLimiter;

  constructor(budget: SourceBudget) {
    this.#rate = new RateLimiter(budget);
  }

  /** After a reload: a changed budget starts with full buckets (a rare, operator-made event). */
  setBudget(budget: SourceBudget): void {
    const o = this.#rate.options;
    if (o.ratePerSecond !== budget.ratePerSecond || o.burst !== budget.burst) {
      this.#rate = new RateLimiter(budget);
    }
  }

  get pending(): number {
    return this.#total;
  }

  pendingFrom(source: string): number {
    return this.#bySource.get(source);
  }

  /** Before the handshake, when the source is not known yet (Deno 2.9.6 cannot tell it
   * without spoiling the QuicIncoming): false means refuse it outright. On true a slot is
   * taken; give it back with handshakeFailed() or through admitSource()/settled(). */
  beginHandshake(): boolean {
    if (this.#total >= MAX_PENDING_HANDSHAKES) return false;
    this.#total++;
    return true;
  }

  handshakeFailed(): void {
    this.#total--;
  }

  /** The handshake completed and the source is known: over its rate or its share of pending
   * slots, the connection is closed before its auth message costs a signature check. */
  admitSource(source: string, now: number): SourceDecision {
    if (!this.#rate.take(source, now)) {
      this.#total--;
      return { admit: false, what: "connection", reason: "too many connections; slow down" };
    }
    if (this.#bySource.get(source) >= MAX_PENDING_PER_SOURCE) {
      this.#total--;
      return {
        admit: false,
        what: "pending_per_source",
        reason: `${MAX_PENDING_PER_SOURCE} connections from this address are still ` +
          "authenticating; retry when they are done",
      };
    }
    this.#bySource.add(source, 1);
    return { admit: true };
  }

  /** Auth finished for an admitted connection (either way). */
  settled(source: string): void {
    this.#total--;
    this.#bySource.add(source, -1);
  }
}

/** Where a connection is in authentication when a stream arrives. */
export type AuthPhase = "awaiting_auth_stream" | "authenticating" | "authenticated";

export type StreamRole = "auth" | "tunnel" | "violation";

/** The first stream carries the auth message; any other before auth succeeds is a protocol
 * violation (the real client waits for the auth reply before opening one). */
export function streamRole(phase: AuthPhase): StreamRole {
  switch (phase) {
    case "awaiting_auth_stream":
      return "auth";
    case "authenticating":
      return "violation";
    case "authenticated":
      return "tunnel";
  }
}

export type AdmitDecision = { ok: true } | { ok: false; reason: string; message: string };

/**
 * The last auth check, after the certificate verified: the principal must still be in the
 * cluster map. A user deleted from cluster.yaml (not revoked) keeps a valid certificate; it
 * must not ping, fetch the map or hold a connection.
 */
export function admitPrincipal(cluster: Cluster, principal: Principal): AdmitDecision {
  if (hasPrincipal(cluster, principal)) return { ok: true };
  return {
    ok: false,
    reason: "unknown_principal",
    message: `${principalString(principal)} is not in cluster '${cluster.cluster}' ` +
      "(removed from cluster.yaml)",
  };
}

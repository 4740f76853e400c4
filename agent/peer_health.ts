/**
 * What the client side knows about one (local identity, node) pair, as a pure state machine:
 * events in (connected, connect failed, closed, ping answered or not, a request failed), the
 * new state and the log lines to write out, `now` as an input. agent/peer_pool.ts feeds it
 * from its sockets and timers and writes the logs and metrics it returns.
 *
 *   up       a connection is open and the node answered its last ping (`peer.up`)
 *   down     no connection, or the node stopped answering pings (`peer.down`)
 *   slow     the smoothed RTT went over `rtt_ms_warn` (`peer.slow`), back under 80 % of it
 *            (`peer.recovered`)
 */

/** Weight of the newest RTT sample in the moving average. */
export const RTT_ALPHA = 0.3;
/** A slow peer counts as recovered below this share of the threshold (no flapping at it). */
export const RECOVER_SHARE = 0.8;

export interface PeerHealth {
  up: boolean;
  /** When `up` last changed (ms since epoch). */
  since: number;
  rttMs?: number;
  slow: boolean;
  lastError?: string;
  /** Connections made so far. */
  connects: number;
}

export type HealthEvent =
  | { type: "connected" }
  | { type: "connect_failed"; reason: string }
  | { type: "closed"; reason: string }
  | { type: "ping"; rttMs: number }
  /** `waitedMs` of this agent's running time; `stalledMs` more it was not running. */
  | { type: "ping_timeout"; waitedMs: number; stalledMs?: number }
  | { type: "request_failed"; reason: string };

export interface HealthLog {
  level: "info" | "warn";
  event: "peer.up" | "peer.down" | "peer.slow" | "peer.recovered";
  fields: Record<string, unknown>;
}

export interface HealthStep {
  health: PeerHealth;
  logs: HealthLog[];
}

export function initialHealth(now: number): PeerHealth {
  return { up: false, since: now, slow: false, connects: 0 };
}

/** The state after `ev` at `now`; `rttWarnMs` is `limits.rtt_ms_warn`. */
export function stepHealth(
  h: PeerHealth,
  ev: HealthEvent,
  now: number,
  rttWarnMs: number,
): HealthStep {
  switch (ev.type) {
    case "connected": {
      const next = setUp({ ...h, connects: h.connects + 1, lastError: undefined }, true, now);
      // Every new connection is logged, not only a change: the operator counts reconnects.
      return { health: next, logs: [up({ connects: next.connects })] };
    }
    case "connect_failed":
    case "closed": {
      const base = ev.type === "closed" ? { ...h, rttMs: undefined } : h;
      return goDown({ ...base, lastError: ev.reason }, ev.reason, now);
    }
    case "ping_timeout": {
      const stalled = Math.round(ev.stalledMs ?? 0);
      const reason = `no answer to a ping within ${Math.round(ev.waitedMs)} ms` +
        (stalled > 0 ? ` (and ${stalled} ms this agent was not running)` : "");
      return goDown({ ...h, lastError: reason }, reason, now);
    }
    case "request_failed":
      return { health: { ...h, lastError: ev.reason }, logs: [] };
    case "ping":
      return onPing(h, ev.rttMs, now, rttWarnMs);
  }
}

function onPing(h: PeerHealth, rttMs: number, now: number, rttWarnMs: number): HealthStep {
  const rtt = h.rttMs === undefined ? rttMs : h.rttMs * (1 - RTT_ALPHA) + rttMs * RTT_ALPHA;
  let next: PeerHealth = { ...h, rttMs: rtt };
  const logs: HealthLog[] = [];
  if (!h.up) {
    // Down for a missed ping, answering again on the same connection.
    next = setUp({ ...next, lastError: undefined }, true, now);
    logs.push(up({ connects: next.connects, reason: "answering again" }));
  }
  if (!next.slow && rtt > rttWarnMs) {
    next = { ...next, slow: true };
    logs.push({
      level: "warn",
      event: "peer.slow",
      fields: { rtt_ms: round(rtt), threshold_ms: rttWarnMs },
    });
  } else if (next.slow && rtt < rttWarnMs * RECOVER_SHARE) {
    next = { ...next, slow: false };
    logs.push({ level: "info", event: "peer.recovered", fields: { rtt_ms: round(rtt) } });
  }
  return { health: next, logs };
}

function goDown(h: PeerHealth, reason: string, now: number): HealthStep {
  if (!h.up) return { health: h, logs: [] };
  return {
    health: setUp(h, false, now),
    logs: [{ level: "warn", event: "peer.down", fields: { reason } }],
  };
}

function setUp(h: PeerHealth, isUp: boolean, now: number): PeerHealth {
  return h.up === isUp ? h : { ...h, up: isUp, since: now };
}

function up(fields: Record<string, unknown>): HealthLog {
  return { level: "info", event: "peer.up", fields };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

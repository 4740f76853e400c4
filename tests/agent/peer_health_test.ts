import assert from "node:assert/strict";
import {
  type HealthEvent,
  initialHealth,
  type PeerHealth,
  stepHealth,
} from "../../agent/peer_health.ts";

const WARN = 500;

/** Feeds events at the given times (a fake clock) and collects the log events. */
function run(events: [number, HealthEvent][], start: PeerHealth = initialHealth(0)) {
  let h = start;
  const logs: string[] = [];
  for (const [at, ev] of events) {
    const step = stepHealth(h, ev, at, WARN);
    h = step.health;
    logs.push(...step.logs.map((l) => l.event));
  }
  return { h, logs };
}

Deno.test("peer_health: connect, close, reconnect: up, down, up with the count", () => {
  const { h, logs } = run([
    [1000, { type: "connected" }],
    [5000, { type: "closed", reason: "timed out" }],
    [6000, { type: "connect_failed", reason: "did not answer" }],
    [7000, { type: "connected" }],
  ]);
  assert.deepEqual(logs, ["peer.up", "peer.down", "peer.up"]);
  assert.equal(h.up, true);
  assert.equal(h.connects, 2);
  assert.equal(h.since, 7000);
  assert.equal(h.lastError, undefined);
});

Deno.test("peer_health: a failed connect while down logs nothing more, keeps the error", () => {
  const { h, logs } = run([
    [0, { type: "connect_failed", reason: "did not answer" }],
    [1000, { type: "connect_failed", reason: "refused" }],
  ]);
  assert.deepEqual(logs, []);
  assert.equal(h.up, false);
  assert.equal(h.lastError, "refused");
  assert.equal(h.since, 0);
});

Deno.test("peer_health: a missed ping is down at once; an answer on the same connection is up", () => {
  const { h, logs } = run([
    [0, { type: "connected" }],
    [2000, { type: "ping_timeout", waitedMs: 1000.4 }],
    [2500, { type: "ping", rttMs: 3 }],
  ]);
  assert.deepEqual(logs, ["peer.up", "peer.down", "peer.up"]);
  assert.equal(h.up, true);
  assert.equal(h.connects, 1, "the same connection, not a reconnect");
  const down = stepHealth(
    stepHealth(initialHealth(0), { type: "connected" }, 0, WARN).health,
    { type: "ping_timeout", waitedMs: 1000.4 },
    10,
    WARN,
  );
  assert.deepEqual(down.logs[0].fields, { reason: "no answer to a ping within 1000 ms" });
});

Deno.test("peer_health: RTT is smoothed; slow over the threshold, recovered under 80 %", () => {
  const { h, logs } = run([
    [0, { type: "connected" }],
    [1, { type: "ping", rttMs: 100 }],
    [2, { type: "ping", rttMs: 2000 }], // 0.7*100 + 0.3*2000 = 670: slow
    [3, { type: "ping", rttMs: 2000 }], // still slow: no second event
    [4, { type: "ping", rttMs: 10 }],
    [5, { type: "ping", rttMs: 10 }],
    [6, { type: "ping", rttMs: 10 }],
    [7, { type: "ping", rttMs: 10 }],
  ]);
  assert.deepEqual(logs, ["peer.up", "peer.slow", "peer.recovered"]);
  assert.equal(h.slow, false);
  assert.ok(h.rttMs! < WARN * 0.8);
});

Deno.test("peer_health: a close forgets the RTT; a failed request only records its reason", () => {
  const { h, logs } = run([
    [0, { type: "connected" }],
    [1, { type: "ping", rttMs: 5 }],
    [2, { type: "request_failed", reason: "node_timeout" }],
  ]);
  assert.equal(h.up, true);
  assert.equal(h.lastError, "node_timeout");
  assert.deepEqual(logs, ["peer.up"]);
  const closed = stepHealth(h, { type: "closed", reason: "closed (0)" }, 3, WARN).health;
  assert.equal(closed.rttMs, undefined);
  assert.equal(closed.up, false);
});

Deno.test("peer_health: a ping timeout after our own stall says how long we were not running", () => {
  const up = stepHealth(initialHealth(0), { type: "connected" }, 0, 200).health;
  const r = stepHealth(up, { type: "ping_timeout", waitedMs: 1000.4, stalledMs: 2700.2 }, 10, 200);
  assert.equal(r.health.up, false);
  assert.equal(
    r.logs[0].fields.reason,
    "no answer to a ping within 1000 ms (and 2700 ms this agent was not running)",
  );
});

/** The node's decisions before auth, with time as an input (issue 11 items 3, 4, 7). */
import assert from "node:assert/strict";
import {
  admitPrincipal,
  MAX_PENDING_HANDSHAKES,
  MAX_PENDING_PER_SOURCE,
  PendingAuth,
  streamRole,
} from "../../agent/auth_gate.ts";
import { loadCluster } from "../../lib/cluster.ts";

const budget = { ratePerSecond: 20, burst: 40 };

Deno.test("auth_gate: one source cannot hold more than its share of pending slots", () => {
  const p = new PendingAuth(budget);
  for (let i = 0; i < MAX_PENDING_PER_SOURCE; i++) {
    assert.ok(p.beginHandshake());
    assert.deepEqual(p.admitSource("198.51.100.7", 0), { admit: true });
  }
  assert.ok(p.beginHandshake());
  const d = p.admitSource("198.51.100.7", 0);
  assert.equal(d.admit, false);
  if (!d.admit) assert.equal(d.what, "pending_per_source");
  assert.equal(p.pending, MAX_PENDING_PER_SOURCE, "the refused one gave its slot back");
  // Another source is unaffected; a settled auth frees the first source's slot.
  assert.ok(p.beginHandshake());
  assert.deepEqual(p.admitSource("203.0.113.9", 0), { admit: true });
  p.settled("198.51.100.7");
  assert.ok(p.beginHandshake());
  assert.deepEqual(p.admitSource("198.51.100.7", 0), { admit: true });
});

Deno.test("auth_gate: three hostile sources leave slots for everyone else", () => {
  const p = new PendingAuth({ ratePerSecond: 1000, burst: 1000 });
  for (const src of ["10.0.0.2", "10.0.0.3", "10.0.0.4"]) {
    for (let i = 0; i < 100; i++) {
      if (p.beginHandshake()) p.admitSource(src, 0);
    }
  }
  assert.equal(p.pending, 3 * MAX_PENDING_PER_SOURCE);
  assert.ok(p.beginHandshake(), "a real user's handshake is taken on");
  assert.deepEqual(p.admitSource("192.0.2.1", 0), { admit: true });
});

Deno.test("auth_gate: past the global cap new handshakes are refused until one settles", () => {
  const p = new PendingAuth(budget);
  for (let i = 0; i < MAX_PENDING_HANDSHAKES; i++) assert.ok(p.beginHandshake());
  assert.equal(p.beginHandshake(), false);
  p.handshakeFailed();
  assert.ok(p.beginHandshake());
});

Deno.test("auth_gate: the per-source rate uses the given clock", () => {
  const p = new PendingAuth({ ratePerSecond: 1, burst: 2 });
  const take = (now: number) => {
    p.beginHandshake();
    const d = p.admitSource("192.0.2.1", now);
    if (d.admit) p.settled("192.0.2.1");
    return d.admit ? "admit" : d.what;
  };
  assert.deepEqual([take(0), take(0), take(0)], ["admit", "admit", "connection"]);
  assert.equal(take(999), "connection");
  assert.equal(take(1000), "admit");
  assert.equal(p.pending, 0, "every slot given back");
  p.setBudget({ ratePerSecond: 1, burst: 5 });
  assert.deepEqual([take(1000), take(1000)], ["admit", "admit"], "a new budget starts full");
});

Deno.test("auth_gate: only the first stream is the auth stream", () => {
  assert.equal(streamRole("awaiting_auth_stream"), "auth");
  assert.equal(streamRole("authenticating"), "violation");
  assert.equal(streamRole("authenticated"), "tunnel");
});

Deno.test("auth_gate: a principal missing from the map is refused", () => {
  const c = loadCluster(
    "cluster: acme\nnodes:\n  n1: { endpoint: 127.0.0.1:7101 }\nusers:\n  alice: {}\n",
    "cluster.yaml",
  );
  assert.deepEqual(admitPrincipal(c, { kind: "user", name: "alice" }), { ok: true });
  assert.deepEqual(admitPrincipal(c, { kind: "node", name: "n1" }), { ok: true });
  const d = admitPrincipal(c, { kind: "user", name: "carol" });
  assert.equal(d.ok, false);
  if (!d.ok) {
    assert.equal(d.reason, "unknown_principal");
    assert.match(d.message, /user:carol is not in cluster 'acme'/);
  }
  assert.equal(admitPrincipal(c, { kind: "user", name: "constructor" }).ok, false);
});

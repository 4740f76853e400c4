import assert from "node:assert/strict";
import {
  CONTROL_STREAMS,
  MAX_CONNECTIONS_PER_PEER,
  placeTunnel,
  TUNNEL_STREAMS_PER_CONNECTION,
} from "../../agent/tunnel_slots.ts";
import { MAX_STREAMS_PER_CONNECTION } from "../../lib/protocol.ts";

const FULL = TUNNEL_STREAMS_PER_CONNECTION;

Deno.test("tunnel_slots: control requests keep their slots on every connection", () => {
  assert.equal(FULL + CONTROL_STREAMS, MAX_STREAMS_PER_CONNECTION);
  assert.deepEqual(placeTunnel([FULL - 1], 0), { kind: "take", connection: 0 });
  assert.deepEqual(placeTunnel([FULL], 0), { kind: "open" }, "a tunnel never takes a control slot");
});

Deno.test("tunnel_slots: the oldest connection with room is filled first", () => {
  assert.deepEqual(placeTunnel([FULL, 3, 0], 0), { kind: "take", connection: 1 });
  assert.deepEqual(placeTunnel([0, FULL], 0), { kind: "take", connection: 0 });
});

Deno.test("tunnel_slots: a connection being made counts; past the bound a tunnel waits", () => {
  const full = (n: number) => Array.from({ length: n }, () => FULL);
  assert.deepEqual(placeTunnel(full(MAX_CONNECTIONS_PER_PEER - 1), 0), { kind: "open" });
  assert.deepEqual(placeTunnel(full(MAX_CONNECTIONS_PER_PEER - 1), 1), { kind: "wait" });
  assert.deepEqual(placeTunnel(full(MAX_CONNECTIONS_PER_PEER), 0), { kind: "wait" });
  assert.ok(MAX_CONNECTIONS_PER_PEER * FULL >= 2000, "2,000 tunnels to one node fit");
});

Deno.test("tunnel_slots: no connection yet means open one", () => {
  assert.deepEqual(placeTunnel([], 0), { kind: "open" });
});

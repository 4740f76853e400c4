/** Every path of the node's stream gate, without sockets (issue 12). */
import assert from "node:assert/strict";
import { decideStream, type StreamGateInput } from "../../agent/stream_gate.ts";
import { loadCluster } from "../../lib/cluster.ts";
import type { Principal } from "../../lib/identity.ts";
import { TunnelStatus as Status } from "../../lib/tunnel_header.ts";

const text = [
  "cluster: acme",
  "nodes:",
  "  n1: { endpoint: 127.0.0.1:7101 }",
  "  n2: { endpoint: 127.0.0.1:7102 }",
  "users:",
  "  alice: { groups: [devs] }",
  "  bob: {}",
  "  admin: { role: admin }",
  "services:",
  "  web: { node: n1, target: 127.0.0.1:8080, allow: [group:devs] }",
  "  ci: { node: n2, target: 127.0.0.1:9000, allow: [user:alice] }",
  "",
].join("\n");
const cluster = loadCluster(text, "cluster.yaml");
const alice: Principal = { kind: "user", name: "alice" };
const bob: Principal = { kind: "user", name: "bob" };

function input(over: Partial<StreamGateInput>): StreamGateInput {
  return {
    request: { kind: "connect", service: "web", port: 8080 },
    principal: alice,
    view: { cluster, text, signature: "sig" },
    node: "n1",
    limits: { max_tunnels: 10, max_tunnels_per_principal: 3 },
    open: { total: 0, forPrincipal: 0 },
    ...over,
  };
}

Deno.test("stream_gate: an allowed tunnel dials the configured target", () => {
  assert.deepEqual(decideStream(input({})), {
    action: "dial",
    service: "web",
    target: { host: "127.0.0.1", port: 8080 },
  });
});

Deno.test("stream_gate: ping is answered at once", () => {
  const d = decideStream(input({ request: { kind: "ping" } }));
  assert.deepEqual(d, { action: "reply", status: Status.OK, message: "" });
});

Deno.test("stream_gate: map is the signed text as one JSON frame", () => {
  const d = decideStream(input({ request: { kind: "map" } }));
  assert.equal(d.action, "reply");
  if (d.action !== "reply") return;
  assert.equal(d.status, Status.OK);
  assert.ok(d.body instanceof Uint8Array);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(d.body)), { map: text, signature: "sig" });
});

Deno.test("stream_gate: map without a signature, or too large, is INTERNAL", () => {
  const unsigned = decideStream(
    input({ request: { kind: "map" }, view: { cluster, text, signature: undefined } }),
  );
  assert.deepEqual(unsigned, {
    action: "reply",
    status: Status.INTERNAL,
    message: "no signed map",
  });
  const huge = decideStream(
    input({
      request: { kind: "map" },
      view: { cluster, text: "x".repeat(70_000), signature: "s" },
    }),
  );
  assert.equal(huge.action === "reply" && huge.status, Status.INTERNAL);
});

Deno.test("stream_gate: status is for admins only", () => {
  const ok = decideStream(
    input({ request: { kind: "status" }, principal: { kind: "user", name: "admin" } }),
  );
  assert.deepEqual(ok, { action: "reply", status: Status.OK, message: "", body: "status" });
  const no = decideStream(input({ request: { kind: "status" } }));
  assert.equal(no.action, "reply");
  if (no.action !== "reply") return;
  assert.equal(no.status, Status.NOT_ALLOWED);
  assert.deepEqual(no.event, {
    level: "warn",
    name: "access.denied",
    fields: { principal: "user:alice", request: "status" },
  });
});

Deno.test("stream_gate: refusals reply, log and count", () => {
  const table: [Partial<StreamGateInput>, number, string | undefined, unknown][] = [
    [
      { request: { kind: "connect", service: "nope", port: 1 } },
      Status.UNKNOWN_SERVICE,
      "access.denied",
      { metric: "accessDenied", service: "unknown" },
    ],
    [{ principal: bob }, Status.NOT_ALLOWED, "access.denied", {
      metric: "accessDenied",
      service: "web",
    }],
    [
      { request: { kind: "connect", service: "web", port: 80 } },
      Status.WRONG_PORT,
      "access.denied",
      { metric: "accessDenied", service: "web" },
    ],
    [
      { request: { kind: "connect", service: "ci", port: 9000 } },
      Status.UNKNOWN_SERVICE,
      undefined,
      { metric: "tunnelsFailed", reason: "wrong_node" },
    ],
    [
      { open: { total: 10, forPrincipal: 0 } },
      Status.OVER_CAPACITY,
      "tunnel.over_capacity",
      { metric: "tunnelsFailed", reason: "capacity" },
    ],
    [
      { open: { total: 3, forPrincipal: 3 } },
      Status.OVER_CAPACITY,
      "tunnel.over_capacity",
      { metric: "tunnelsFailed", reason: "capacity" },
    ],
  ];
  for (const [over, status, event, count] of table) {
    const d = decideStream(input(over));
    const what = JSON.stringify(over);
    assert.equal(d.action, "reply", what);
    if (d.action !== "reply") continue;
    assert.equal(d.status, status, what);
    assert.equal(d.event?.name, event, what);
    assert.deepEqual(d.count, count, what);
    assert.ok(d.message.length > 0, what);
  }
});

Deno.test("stream_gate: a principal missing from the map is not allowed", () => {
  const d = decideStream(input({ principal: { kind: "user", name: "carol" } }));
  assert.equal(d.action === "reply" && d.status, Status.NOT_ALLOWED);
});

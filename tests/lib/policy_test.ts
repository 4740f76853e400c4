import assert from "node:assert/strict";
import { type Cluster, loadCluster } from "../../lib/cluster.ts";
import { ConfigError } from "../../lib/config_problems.ts";
import type { Principal } from "../../lib/identity.ts";
import { authorize, type Denial, DENIALS, isAllowed, serviceFromHost } from "../../lib/policy.ts";
import { Reply } from "../../lib/socks5.ts";
import { socksReplyFor, TunnelStatus } from "../../lib/tunnel_header.ts";

const TEXT = `cluster: acme
nodes:
  n1: { endpoint: 127.0.0.1:7101 }
  n2: { endpoint: 127.0.0.1:7102 }
users:
  alice: { groups: [devs, ops] }
  bob: {}
  carol: { groups: [ops] }
services:
  web:
    node: n1
    target: 127.0.0.1:8080
    port: 80
    allow: [group:devs, user:bob, service:ci, gateway:office]
  ci:
    node: n2
    target: "[::1]:9000"
    allow: [group:ops]
  db:
    node: n2
    target: db.lan:5432
    allow: []
gateways:
  office: {}
  lab: {}
`;
const CLUSTER = loadCluster(TEXT, "cluster.yaml");

const user = (name: string): Principal => ({ kind: "user", name });

Deno.test("policy: user matches by name", () => {
  assert.equal(isAllowed(CLUSTER, user("bob"), "web"), true);
  assert.equal(isAllowed(CLUSTER, user("bob"), "ci"), false);
  assert.deepEqual(authorize(CLUSTER, user("bob"), "web", 80), {
    allow: true,
    service: "web",
    node: "n1",
    target: { host: "127.0.0.1", port: 8080 },
  });
});

Deno.test("policy: group matches users whose groups include it", () => {
  assert.equal(isAllowed(CLUSTER, user("alice"), "web"), true, "alice is in devs");
  assert.equal(isAllowed(CLUSTER, user("carol"), "web"), false, "carol is only in ops");
  assert.equal(isAllowed(CLUSTER, user("carol"), "ci"), true);
  // a group entry never matches a non-user principal that happens to share the name
  const c: Cluster = structuredClone(CLUSTER);
  c.services.ci.allow = [{ kind: "group", name: "ops" }];
  c.services.ops = { node: "n1", target: { host: "127.0.0.1", port: 1 }, allow: [] };
  assert.equal(isAllowed(c, { kind: "service", name: "ops" }, "ci"), false);
});

Deno.test("policy: service and gateway match exactly", () => {
  assert.equal(isAllowed(CLUSTER, { kind: "service", name: "ci" }, "web"), true);
  assert.equal(isAllowed(CLUSTER, { kind: "service", name: "db" }, "web"), false);
  assert.equal(isAllowed(CLUSTER, { kind: "gateway", name: "office" }, "web"), true);
  assert.equal(isAllowed(CLUSTER, { kind: "gateway", name: "lab" }, "web"), false);
  // same name, other kind
  assert.equal(isAllowed(CLUSTER, { kind: "user", name: "ci" }, "web"), false);
  assert.equal(isAllowed(CLUSTER, { kind: "user", name: "office" }, "web"), false);
});

Deno.test("policy: nodes are never allowed, even if an allow entry names them", () => {
  // an allow list naming a node does not load, so no checked map holds one
  assert.throws(
    () => loadCluster(TEXT.replace("user:bob,", "node:n1,"), "cluster.yaml"),
    (e: unknown) => e instanceof ConfigError && e.message.includes("nodes are not principals"),
  );
  const c: Cluster = structuredClone(CLUSTER);
  c.services.web.allow = [{ kind: "user", name: "n1" }, { kind: "group", name: "devs" }];
  assert.equal(isAllowed(c, { kind: "node", name: "n1" }, "web"), false);
  const d = authorize(c, { kind: "node", name: "n1" }, "web", 80);
  assert.equal(d.allow, false);
  assert.equal(!d.allow && d.reason, "not_allowed");
});

Deno.test("policy: a principal no longer in the cluster map is refused", () => {
  // cluster.yaml rejects a stale entry, but a map built by hand must not widen access
  const c: Cluster = structuredClone(CLUSTER);
  delete c.users.bob;
  assert.equal(isAllowed(c, user("bob"), "web"), false);
  delete c.gateways.office;
  assert.equal(isAllowed(c, { kind: "gateway", name: "office" }, "web"), false);
  assert.equal(isAllowed(CLUSTER, user("constructor"), "web"), false);
  assert.equal(isAllowed(CLUSTER, user("mallory"), "web"), false);
});

Deno.test("policy: malformed allow entries never get into a map", () => {
  // allow entries are parsed once at load; one that does not parse stops the load
  for (const bad of ["bob", "user:", "user:Bob", "*"]) {
    assert.throws(
      () => loadCluster(TEXT.replace("user:bob,", `"${bad}",`), "cluster.yaml"),
      (e: unknown) => e instanceof ConfigError && e.problems[0].path === "services.web.allow[1]",
      bad,
    );
  }
});

Deno.test("policy: unknown service", () => {
  for (const name of ["nope", "constructor", "__proto__", "toString"]) {
    const d = authorize(CLUSTER, user("alice"), name, 80);
    assert.equal(d.allow, false);
    assert.equal(!d.allow && d.reason, "unknown_service", name);
    assert.equal(isAllowed(CLUSTER, user("alice"), name), false);
  }
  const d = authorize(CLUSTER, user("alice"), "nope", 80);
  assert.ok(!d.allow && d.message.includes("'nope'") && d.message.includes("acme"));
});

Deno.test("policy: not allowed names the principal and the allow list", () => {
  const d = authorize(CLUSTER, user("carol"), "web", 80);
  assert.equal(d.allow, false);
  assert.equal(!d.allow && d.reason, "not_allowed");
  assert.ok(!d.allow && d.message.includes("user:carol"));
  assert.ok(!d.allow && d.message.includes("services.web.allow"));
  assert.equal(authorize(CLUSTER, user("alice"), "db", 5432).allow, false, "empty allow list");
});

Deno.test("policy: wrong port", () => {
  const d = authorize(CLUSTER, user("bob"), "web", 8080);
  assert.equal(d.allow, false);
  assert.equal(!d.allow && d.reason, "wrong_port");
  assert.ok(!d.allow && d.message.includes("port 80"));
  // the port defaults to the target's port
  const ci = authorize(CLUSTER, user("carol"), "ci", 9000);
  assert.deepEqual(ci, {
    allow: true,
    service: "ci",
    node: "n2",
    target: { host: "::1", port: 9000 },
  });
  assert.equal(authorize(CLUSTER, user("carol"), "ci", 80).allow, false);
});

Deno.test("policy: a principal that may not use a service learns nothing about its port", () => {
  const d = authorize(CLUSTER, user("carol"), "web", 1);
  assert.equal(!d.allow && d.reason, "not_allowed");
});

Deno.test("policy: serviceFromHost accepts <service>.flor and <service>.<cluster>.flor", () => {
  const cases: [string, string | undefined][] = [
    ["web.flor", "web"],
    ["WEB.Flor", "web"],
    ["web.flor.", "web"],
    ["web.acme.flor", "web"],
    ["Web.ACME.flor.", "web"],
    ["nope.flor", "nope"], // authorize answers unknown_service
    ["web.other.flor", undefined],
    ["web.acme.flor.com", undefined],
    ["web.x.acme.flor", undefined],
    ["web", undefined],
    ["flor", undefined],
    [".flor", undefined],
    ["web.flor..", undefined],
    ["web.com", undefined],
    ["we_b.flor", undefined],
    ["127.0.0.1", undefined],
    ["::1", undefined],
    ["[::1]", undefined],
    ["2001:db8::1", undefined],
    ["", undefined],
  ];
  for (const [host, expected] of cases) {
    assert.equal(serviceFromHost(CLUSTER, host), expected, host);
  }
});

Deno.test("policy: every denial has one status and one SOCKS reply, and they agree", () => {
  const all: Denial[] = ["unknown_service", "not_allowed", "wrong_port"];
  assert.deepEqual(Object.keys(DENIALS).sort(), [...all].sort());
  for (const d of all) {
    // The client relays the node's status with socksReplyFor: the same reply as its own check.
    assert.equal(socksReplyFor(DENIALS[d].status), DENIALS[d].reply, d);
  }
  assert.equal(DENIALS.unknown_service.reply, Reply.HOST_UNREACHABLE);
  assert.equal(DENIALS.wrong_port.status, TunnelStatus.WRONG_PORT);
});

import assert from "node:assert/strict";
import { loadCluster } from "../../lib/cluster.ts";
import { principalAccess, serviceAccess } from "../../lib/access.ts";
import { isAllowed } from "../../lib/policy.ts";
import type { Principal } from "../../lib/identity.ts";

const CLUSTER = loadCluster(
  `cluster: acme
nodes:
  n1: { endpoint: 127.0.0.1:7101 }
users:
  alice: { groups: [devs] }
  bob: { groups: [devs, ops] }
  carol: {}
services:
  web: { node: n1, target: 127.0.0.1:8080, port: 80, allow: [group:devs, user:bob, gateway:office] }
  ci: { node: n1, target: 127.0.0.1:8081, allow: [group:ops, service:web] }
  db: { node: n1, target: 127.0.0.1:5432, allow: [] }
gateways:
  office:
    clients:
      printer: { services: [web] }
      scanner: { services: [] }
revoked:
  - { serial: "0a", principal: user:bob, date: 2026-11-25, reason: laptop lost }
`,
  "cluster.yaml",
);

Deno.test("access: a service lists each allow entry with whom it admits", () => {
  const a = serviceAccess(CLUSTER, "web");
  assert.equal(a.address, "web.flor:80");
  assert.equal(a.node, "n1");
  assert.deepEqual(a.rules, [
    { entry: "group:devs", principals: ["user:alice", "user:bob"] },
    { entry: "user:bob", principals: ["user:bob"] },
    { entry: "gateway:office", principals: ["gateway:office"] },
  ]);
  assert.deepEqual(a.principals.at(-1)?.lan_clients, ["printer"]);
  assert.equal(a.principals[0].lan_clients, undefined);
  assert.deepEqual(a.principals.map((g) => [g.principal, g.via]), [
    ["user:alice", ["group:devs"]],
    ["user:bob", ["group:devs", "user:bob"]],
    ["gateway:office", ["gateway:office"]],
  ]);
});

Deno.test("access: revoked principals are shown with the revocation", () => {
  const bob = serviceAccess(CLUSTER, "web").principals.find((g) => g.principal === "user:bob")!;
  assert.deepEqual(bob.revoked, [{ serial: "a", date: "2026-11-25", reason: "laptop lost" }]);
  const alice = serviceAccess(CLUSTER, "web").principals.find((g) => g.principal === "user:alice");
  assert.deepEqual(alice?.revoked, []);
  assert.equal(principalAccess(CLUSTER, { kind: "user", name: "bob" }).revoked.length, 1);
});

Deno.test("access: a principal lists what it reaches and through which entry", () => {
  const a = principalAccess(CLUSTER, { kind: "user", name: "bob" });
  assert.deepEqual(a.groups, ["devs", "ops"]);
  assert.deepEqual(a.services, [
    { service: "ci", node: "n1", address: "ci.flor:8081", via: ["group:ops"] },
    { service: "web", node: "n1", address: "web.flor:80", via: ["group:devs", "user:bob"] },
  ]);
  assert.deepEqual(
    principalAccess(CLUSTER, { kind: "service", name: "web" }).services.map((s) => s.service),
    ["ci"],
  );
  assert.deepEqual(principalAccess(CLUSTER, { kind: "user", name: "carol" }).services, []);
});

Deno.test("access: an empty allow list admits nobody; nodes reach nothing, with why", () => {
  assert.deepEqual(serviceAccess(CLUSTER, "db").principals, []);
  const n1 = principalAccess(CLUSTER, { kind: "node", name: "n1" });
  assert.deepEqual(n1.services, []);
  assert.match(n1.note ?? "", /service identity/);
});

Deno.test("access: agrees with isAllowed for every principal and service", () => {
  const principals: Principal[] = [
    ...["alice", "bob", "carol"].map((name) => ({ kind: "user" as const, name })),
    ...["web", "ci", "db"].map((name) => ({ kind: "service" as const, name })),
    { kind: "gateway", name: "office" },
    { kind: "node", name: "n1" },
  ];
  for (const p of principals) {
    const reach = new Set(principalAccess(CLUSTER, p).services.map((s) => s.service));
    for (const service of Object.keys(CLUSTER.services)) {
      assert.equal(reach.has(service), isAllowed(CLUSTER, p, service), `${p.kind}:${p.name}`);
      const listed = serviceAccess(CLUSTER, service).principals
        .some((g) => g.principal === `${p.kind}:${p.name}`);
      assert.equal(listed, isAllowed(CLUSTER, p, service), `${p.kind}:${p.name} ${service}`);
    }
  }
});

Deno.test("access: a gateway lists, per service, the LAN clients that may use it", () => {
  const a = principalAccess(CLUSTER, { kind: "gateway", name: "office" });
  assert.deepEqual(a.services, [
    {
      service: "web",
      node: "n1",
      address: "web.flor:80",
      via: ["gateway:office"],
      lan_clients: ["printer"],
    },
  ]);
});

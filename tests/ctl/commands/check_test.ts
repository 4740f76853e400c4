import assert from "node:assert/strict";
import { hostedRevocations } from "../../../ctl/commands/check.ts";
import { loadCluster } from "../../../lib/cluster.ts";

const text = [
  "cluster: acme",
  "nodes:",
  "  n1: { endpoint: 127.0.0.1:7101 }",
  "users:",
  "  alice: {}",
  "services:",
  "  web: { node: n1, target: 127.0.0.1:8080, allow: [user:alice] }",
  "revoked:",
  '  - { serial: "0a1b2c", principal: service:web }', // 9
  '  - { serial: "aa", principal: user:alice }', // 10
  '  - { serial: "bb", principal: node:n1 }', // 11
  "",
].join("\n");
const cluster = loadCluster(text, "cluster.yaml");

// Issue 11 item 6: `florctl check` said ok while n1 still ran as a revoked service:web.
Deno.test("check: a revoked certificate a node still runs with is an error at its line", () => {
  const current = new Map([["service:web", "a1b2c"], ["user:alice", "aa"], ["node:n1", "cc"]]);
  const problems = hostedRevocations(cluster, current, text, "cluster.yaml");
  assert.equal(problems.length, 1, JSON.stringify(problems));
  const [p] = problems;
  assert.equal(p.severity, "error");
  assert.equal(p.line, 9);
  assert.equal(p.path, "revoked[0].serial");
  assert.match(p.message, /service:web is revoked but node n1 still runs with that certificate/);
  assert.match(p.message, /florctl deploy --node n1/);
});

Deno.test("check: a revoked node certificate still in pki/ is flagged too", () => {
  const problems = hostedRevocations(cluster, new Map([["node:n1", "bb"]]), text, "cluster.yaml");
  assert.equal(problems.length, 1);
  assert.equal(problems[0].line, 11);
});

Deno.test("check: once re-issued (another serial), nothing is flagged", () => {
  const current = new Map([["service:web", "ff01"], ["node:n1", "ff02"]]);
  assert.deepEqual(hostedRevocations(cluster, current, text, "cluster.yaml"), []);
});

// A user (or gateway) is not hosted by a node, even when a service has the same name: its
// revocation is the ordinary kind, not a node running with a revoked certificate.
Deno.test("check: a revoked user named like a service is not a node's certificate", () => {
  const sameName = [
    "cluster: acme",
    "nodes:",
    "  n1: { endpoint: 127.0.0.1:7101 }",
    "users:",
    "  web: {}",
    "services:",
    "  web: { node: n1, target: 127.0.0.1:8080, allow: [user:web] }",
    "revoked:",
    '  - { serial: "aa", principal: user:web }',
    "",
  ].join("\n");
  const c = loadCluster(sameName, "cluster.yaml");
  const current = new Map([["user:web", "aa"], ["service:web", "bb"]]);
  assert.deepEqual(hostedRevocations(c, current, sameName, "cluster.yaml"), []);
});

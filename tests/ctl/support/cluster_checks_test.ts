/** Doctor's checks of cluster.yaml and pki/, from made-up inputs (no cluster directory). */
import assert from "node:assert/strict";
import {
  certificateExpiryChecks,
  clusterYamlChecks,
  revokedStillConfiguredChecks,
} from "../../../ctl/support/cluster_checks.ts";
import { loadCluster } from "../../../lib/cluster.ts";
import type { ConfigProblem } from "../../../lib/config_problems.ts";

const DAY_MS = 86_400_000;
const NOW = new Date("2026-03-01T12:00:00Z");

// ---- doctor: certificate expiry ----

Deno.test("doctor: expired fails, within 14 days warns, later is one ok line", () => {
  const at = (days: number) => new Date(NOW.getTime() + days * DAY_MS);
  const checks = certificateExpiryChecks([
    { principal: "ca", notAfter: at(3000) },
    { principal: { kind: "user", name: "bob" }, notAfter: at(7) },
    { principal: { kind: "node", name: "n1" }, notAfter: at(-1) },
    { principal: { kind: "service", name: "web" }, notAfter: at(14), hostNode: "n1" },
    { principal: { kind: "user", name: "alice" }, notAfter: at(14.01) },
  ], NOW);
  const by = (s: string) => checks.find((c) => c.subject === s)!;
  assert.equal(by("user:bob").verdict, "warn");
  assert.match(by("user:bob").detail, /in 7 day/);
  assert.match(by("user:bob").fix, /florctl rotate --within 14d.*florctl enroll user bob/);
  assert.equal(by("node:n1").verdict, "fail");
  assert.match(by("node:n1").detail, /expired/);
  assert.match(by("node:n1").fix, /florctl rotate --within 14d.*florctl deploy --node n1/);
  assert.equal(by("service:web").verdict, "warn"); // exactly 14 days: inside the window
  assert.match(by("service:web").fix, /florctl deploy --node n1/);
  assert.equal(by("pki").verdict, "ok");
  assert.match(by("pki").detail, /^2 certificate\(s\).*next to expire: user:alice/);
  assert.equal(checks.filter((c) => c.verdict === "ok").length, 1);
});

Deno.test("doctor: an expiring CA warns with the manual path", () => {
  const checks = certificateExpiryChecks(
    [{ principal: "ca", notAfter: new Date(NOW.getTime() + 3 * DAY_MS) }],
    NOW,
  );
  assert.equal(checks.length, 1);
  assert.equal(checks[0].subject, "ca");
  assert.equal(checks[0].verdict, "warn");
  assert.match(checks[0].fix, /re-enroll every machine/);
});

Deno.test("doctor: cluster.yaml errors fail and warnings warn, each as FILE:LINE", () => {
  const p = (severity: ConfigProblem["severity"], line: number): ConfigProblem => ({
    file: "c/cluster.yaml",
    line,
    column: 5,
    path: "services.web.node",
    message: "node 'n3' is not defined",
    severity,
  });
  assert.deepEqual(clusterYamlChecks("c/cluster.yaml", []).map((c) => c.verdict), ["ok"]);
  const [e, w] = clusterYamlChecks("c/cluster.yaml", [p("error", 14), p("warning", 20)]);
  assert.equal(e.verdict, "fail");
  assert.equal(e.subject, "c/cluster.yaml:14:5");
  assert.equal(e.detail, "services.web.node: node 'n3' is not defined");
  assert.match(e.fix, /line 14.*florctl check/);
  assert.equal(w.verdict, "warn");
  assert.match(w.detail, /^warning: /);
});

const CLUSTER = `
cluster: acme
nodes:
  n1: { endpoint: 127.0.0.1:7101 }
users:
  admin: { role: admin }
  bob: {}
  carol: {}
services:
  ci: { node: n1, target: 127.0.0.1:9000, allow: [user:bob, user:carol] }
revoked:
  - { serial: "0abc", principal: user:bob, reason: laptop lost }
  - { serial: "0def", principal: user:carol }
`;

Deno.test("doctor: a configured principal whose current certificate is revoked warns", () => {
  const c = loadCluster(CLUSTER, "cluster.yaml");
  const checks = revokedStillConfiguredChecks(
    c,
    new Map([["user:bob", "0abc"], ["user:carol", "0999"], ["user:admin", "0123"]]),
  );
  // carol's current certificate is a new one: only bob, and the allow entry naming him.
  assert.deepEqual(checks.map((x) => [x.subject, x.verdict]), [
    ["user:bob", "warn"],
    ["services.ci.allow", "warn"],
  ]);
  assert.match(checks[0].detail, /users\.bob.*serial 0abc.*laptop lost/);
  assert.match(checks[0].fix, /remove users\.bob.*florctl enroll user bob/);
  assert.match(checks[1].detail, /names user:bob/);
  const none = revokedStillConfiguredChecks(c, new Map([["user:bob", "0fff"]]));
  assert.deepEqual(none.map((x) => x.verdict), ["ok"]);
});

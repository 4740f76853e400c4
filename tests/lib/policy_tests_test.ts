import assert from "node:assert/strict";
import { formatProblem } from "../../lib/config_problems.ts";
import { checkClusterAndTests } from "../../lib/policy_tests.ts";

const BASE = `cluster: acme
nodes:
  n1: { endpoint: 127.0.0.1:7101 }
users:
  alice: { groups: [devs] }
  bob: {}
services:
  web:
    node: n1
    target: 127.0.0.1:8080
    allow: [group:devs]
  db:
    node: n1
    target: 127.0.0.1:5432
    allow: [user:bob]
`;

function problems(text: string): string[] {
  return checkClusterAndTests(text, "cluster.yaml").problems.map(formatProblem);
}

Deno.test("policy tests: tests that hold leave the cluster accepted", () => {
  const text = BASE + `tests:
  - principal: user:alice
    reach: [web]
    deny: [db]
  - { principal: user:bob, reach: [db], deny: [web] }
`;
  const r = checkClusterAndTests(text, "cluster.yaml");
  assert.deepEqual(r.problems, []);
  assert.equal(r.cluster?.tests.length, 2);
});

Deno.test("policy tests: a reach that no longer holds fails at its FILE:LINE:COL", () => {
  // Someone replaced group:devs by bob alone: alice's test must stop the change.
  const text = BASE.replace("allow: [group:devs]", "allow: [user:bob]") + `tests:
  - principal: user:alice
    reach: [web]
`;
  const r = checkClusterAndTests(text, "cluster.yaml");
  assert.equal(r.cluster, undefined);
  assert.deepEqual(problems(text), [
    "cluster.yaml:18:13: tests[0].reach[0]: test failed: user:alice cannot reach 'web': " +
    "services.web.allow (line 11) does not admit it; add user:alice or one of its groups " +
    "(devs), or change the test if the change was meant",
  ]);
  assert.deepEqual(problems(BASE + "tests:\n  - principal: user:alice\n    reach: [web]\n"), []);
});

Deno.test("policy tests: a deny that no longer holds names the entry that grants it", () => {
  // Someone added bob to devs, which opens web to him.
  const text = BASE.replace("bob: {}", "bob: { groups: [devs] }") + `tests:
  - principal: user:bob
    deny: [web]
`;
  assert.deepEqual(problems(text), [
    "cluster.yaml:18:12: tests[0].deny[0]: test failed: user:bob can reach 'web' through " +
    "group:devs in services.web.allow (line 11); remove that entry, or change the test if " +
    "the change was meant",
  ]);
  assert.deepEqual(problems(BASE + "tests:\n  - principal: user:bob\n    deny: [web]\n"), []);
});

Deno.test("policy tests: unknown principals and services are errors with a suggestion", () => {
  const text = BASE + `tests:
  - { principal: user:alcie, reach: [web] }
  - { principal: user:alice, reach: [wbe] }
  - { principal: node:n1, deny: [web] }
`;
  const p = problems(text);
  assert.equal(p.length, 3, p.join("\n"));
  assert.match(
    p[0],
    /^cluster\.yaml:17:7: tests\[0\]\.principal: user 'alcie' is not defined.*did you mean 'user:alice'/,
  );
  assert.match(
    p[1],
    /^cluster\.yaml:18:\d+: tests\[1\]\.reach\[0\]: service 'wbe' is not defined \(did you mean 'web'\?\)/,
  );
  assert.match(p[2], /^cluster\.yaml:19:7: tests\[2\]\.principal: nodes are never admitted/);
});

Deno.test("policy tests: the schema explains a malformed test", () => {
  const p = problems(
    BASE + `tests:
  - { principal: alice, reach: web }
  - { principal: user:bob, allow: [db] }
`,
  );
  assert.ok(
    p.some((l) => /tests\[0\]\.principal: 'alice' is not a principal/.test(l)),
    p.join("\n"),
  );
  assert.ok(
    p.some((l) => /tests\[0\]\.reach: must be a list of service names/.test(l)),
    p.join("\n"),
  );
  assert.ok(p.some((l) => /tests\[1\]\.allow: unknown key 'allow'/.test(l)), p.join("\n"));
});

Deno.test("policy tests: they are not evaluated when the cluster itself is broken", () => {
  const text =
    BASE.replace("node: n1\n    target: 127.0.0.1:8080", "node: n9\n    target: 127.0.0.1:8080") +
    "tests:\n  - { principal: user:alice, deny: [web] }\n";
  const p = problems(text);
  assert.equal(p.length, 1);
  assert.match(p[0], /services\.web\.node: node 'n9' is not defined/);
});

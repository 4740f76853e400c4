import assert from "node:assert/strict";
import {
  checkCluster,
  groupsOf,
  loadCluster,
  parseAllowEntry,
  revokedSerials,
  servicePort,
} from "../../lib/cluster.ts";
import {
  closestMatch,
  ConfigError,
  type ConfigProblem,
  formatProblem,
  locate,
  parseYamlWithSchema,
} from "../../lib/config_problems.ts";
import * as YAML from "yaml";
import { z } from "zod";

/** One string per line, so a test's line numbers can be read off the array index + 1. */
function lines(...ls: string[]): string {
  return ls.join("\n") + "\n";
}

const FULL = lines(
  "cluster: acme", // 1
  "nodes:", // 2
  "  n1:", // 3
  "    endpoint: 127.0.0.1:7101", // 4
  "    ssh: root@203.0.113.10:22", // 5
  "  n2:", // 6
  "    endpoint: '[::1]:7102'", // 7
  "users:", // 8
  "  alice:", // 9
  "    groups: [devs]", // 10
  "  bob: {}", // 11
  "services:", // 12
  "  web:", // 13
  "    node: n1", // 14
  "    target: 127.0.0.1:8080", // 15
  "    port: 80", // 16
  "    allow: [group:devs, user:bob, service:ci, gateway:office]", // 17
  "  ci:", // 18
  "    node: n2", // 19
  "    target: ci.lan:9000", // 20
  "    allow:", // 21
  "      - user:alice", // 22
  "gateways:", // 23
  "  office: { listen: 192.168.1.10:1080, allow_cidr: [192.168.1.0/24] }", // 24
  "revoked:", // 25
  "  - serial: 3FA2C4", // 26
  "    principal: user:alice", // 27
  "    reason: laptop lost", // 28
  "    date: 2026-11-25", // 29
);

/** FULL with `from` replaced by `to` (which must occur exactly once). */
function edit(from: string, to: string, text = FULL): string {
  assert.equal(text.split(from).length, 2, `'${from}' must occur once`);
  return text.replace(from, to);
}

function check(text: string): ReturnType<typeof checkCluster> {
  return checkCluster(text, "cluster.yaml");
}

/** Asserts that exactly one problem (or one of the given severity) matches and returns it. */
function only(
  problems: ConfigProblem[],
  severity: ConfigProblem["severity"] = "error",
): ConfigProblem {
  const matching = problems.filter((p) => p.severity === severity);
  assert.equal(matching.length, 1, problems.map(formatProblem).join("\n"));
  return matching[0];
}

function assertError(text: string, line: number, path: string, ...fragments: string[]): void {
  const r = check(text);
  assert.equal(r.cluster, undefined);
  const p = only(r.problems);
  assert.equal(p.line, line, formatProblem(p));
  assert.equal(p.path, path, formatProblem(p));
  for (const f of fragments) assert.ok(p.message.includes(f), `${formatProblem(p)}\nlacks: ${f}`);
}

Deno.test("cluster: full example parses with defaults applied", () => {
  const r = check(FULL);
  assert.deepEqual(r.problems, []);
  const c = r.cluster!;
  assert.equal(c.cluster, "acme");
  // addresses, principals and allow entries come out parsed
  assert.deepEqual(c.nodes.n1, {
    endpoint: { host: "127.0.0.1", port: 7101 },
    ssh: { user: "root", host: "203.0.113.10", port: 22 },
  });
  assert.deepEqual(c.nodes.n2.endpoint, { host: "::1", port: 7102 });
  assert.deepEqual(c.users.bob, { groups: [] });
  assert.deepEqual(c.users.alice.groups, ["devs"]);
  assert.deepEqual(c.services.ci.allow, [{ kind: "user", name: "alice" }]);
  assert.deepEqual(c.services.web.allow, [
    { kind: "group", name: "devs" },
    { kind: "user", name: "bob" },
    { kind: "service", name: "ci" },
    { kind: "gateway", name: "office" },
  ]);
  assert.deepEqual(c.services.ci.target, { host: "ci.lan", port: 9000 });
  assert.equal(servicePort(c.services.web), 80);
  assert.equal(servicePort(c.services.ci), 9000, "port defaults to the target's port");
  assert.deepEqual(c.gateways.office, {
    listen: { host: "192.168.1.10", port: 1080 },
    allow_cidr: ["192.168.1.0/24"],
    clients: {},
  });
  assert.deepEqual(c.revoked, [
    {
      serial: "3fa2c4",
      principal: { kind: "user", name: "alice" },
      reason: "laptop lost",
      date: "2026-11-25",
    },
  ]);
  assert.deepEqual(revokedSerials(c), new Set(["3fa2c4"]));
  assert.deepEqual(groupsOf(c), new Set(["devs"]));
  assert.deepEqual(loadCluster(FULL, "cluster.yaml"), c);
});

Deno.test("cluster: a fresh cluster has only its name, sections default to empty", () => {
  const empty = { nodes: {}, users: {}, services: {}, gateways: {}, revoked: [], tests: [] };
  assert.deepEqual(check("cluster: acme\n").cluster, { cluster: "acme", ...empty });
  const nulls = lines("cluster: acme", "nodes:", "users:", "services:", "gateways:", "revoked:");
  assert.deepEqual(check(nulls), { cluster: { cluster: "acme", ...empty }, problems: [] });
  const braces = "cluster: acme\nnodes: {}\nusers: {}\nservices: {}\ngateways: {}\nrevoked: []\n";
  assert.deepEqual(check(braces).cluster, { cluster: "acme", ...empty });
});

Deno.test("cluster: a user or gateway with nothing after its name is empty", () => {
  const c = check(lines("cluster: acme", "users:", "  bob:", "gateways:", "  office:")).cluster!;
  assert.deepEqual(c.users.bob, { groups: [] });
  assert.deepEqual(c.gateways.office, { allow_cidr: [], clients: {} });
});

Deno.test("cluster: problems are formatted FILE:LINE:COL: path: message", () => {
  const r = check(edit("node: n1", "node: n3"));
  const p = only(r.problems);
  assert.deepEqual({ line: p.line, column: p.column, path: p.path }, {
    line: 14,
    column: 5,
    path: "services.web.node",
  });
  assert.equal(
    formatProblem(p),
    "cluster.yaml:14:5: services.web.node: node 'n3' is not defined; " +
      "add it with `florctl node add n3 --endpoint HOST:PORT` or fix the name",
  );
  const warning = { ...p, severity: "warning" as const, message: "m" };
  assert.equal(formatProblem(warning), "cluster.yaml:14:5: warning: services.web.node: m");
  assert.equal(formatProblem({ ...warning, path: "" }), "cluster.yaml:14:5: warning: m");
});

Deno.test("cluster: loadCluster throws ConfigError listing every error, one per line", () => {
  const text = edit("node: n2", "node: n9", edit("node: n1", "node: n3"));
  let err: unknown;
  try {
    loadCluster(text, "c.yaml");
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ConfigError);
  assert.equal(err.problems.length, 2);
  const messageLines = err.message.split("\n");
  assert.equal(messageLines.length, 2);
  assert.match(messageLines[0], /^c\.yaml:14:5: services\.web\.node: node 'n3'/);
  assert.match(messageLines[1], /^c\.yaml:19:5: services\.ci\.node: node 'n9'/);
});

Deno.test("cluster: YAML syntax error reports its line and stops there", () => {
  const text = edit("  web:", "  web:\n   node: [oops");
  const r = check(text);
  assert.equal(r.cluster, undefined);
  assert.ok(r.problems.length >= 1);
  assert.ok(r.problems.every((p) => p.message.startsWith("YAML syntax:")));
  assert.equal(r.problems[0].line, 14);
});

Deno.test("cluster: tab indentation is a syntax error with the fix", () => {
  assertError("cluster: acme\n\tnodes: {}\n", 2, "", "indent with spaces");
});

Deno.test("cluster: unquoted IPv6 endpoint explains the quoting", () => {
  const r = check(edit("endpoint: '[::1]:7102'", "endpoint: [::1]:7102"));
  const p = r.problems[0];
  assert.equal(p.line, 7);
  assert.equal(p.path, "nodes.n2.endpoint");
  assert.ok(p.message.includes(`"[::1]:7101"`), p.message);
});

Deno.test("cluster: duplicate name is reported at the second definition", () => {
  const text = edit("  bob: {}", "  bob: {}\n  alice: {}");
  assertError(text, 12, "users", "duplicate name 'alice'", "first defined on line 9", "rename");
});

Deno.test("cluster: duplicate service name", () => {
  const text = edit("  ci:", "  web:");
  assertError(text, 18, "services", "duplicate name 'web'", "line 13");
});

Deno.test("cluster: unknown key with a suggestion", () => {
  const text = edit("    target: 127.0.0.1:8080", "    tagret: 127.0.0.1:8080");
  const r = check(text);
  const unknown = r.problems.find((p) => p.message.startsWith("unknown key"))!;
  assert.equal(unknown.line, 15);
  assert.equal(unknown.column, 5);
  assert.equal(unknown.message, "unknown key 'tagret' in services.web; did you mean 'target'?");
  // the now missing target is reported too, at the service that lacks it
  const missing = r.problems.find((p) => p.path === "services.web.target")!;
  assert.equal(missing.line, 13);
  assert.ok(missing.message.startsWith("is required"), missing.message);
  assert.ok(missing.message.includes("target: 127.0.0.1:8080"), missing.message);
});

Deno.test("cluster: unknown key without a close match lists the allowed keys", () => {
  assertError(
    edit("    ssh: root@203.0.113.10:22", "    colour: blue"),
    5,
    "nodes.n1.colour",
    "unknown key 'colour' in nodes.n1; allowed keys are endpoint, ssh",
  );
  assertError(lines("cluster: acme", "node: {}"), 2, "node", "at the top level", "'nodes'");
  assertError(
    edit("allow_cidr: [192.168.1.0/24] }", "allow_cidr: [192.168.1.0/24], cidr: 10.0.0.0/8 }"),
    24,
    "gateways.office.cidr",
    "allowed keys are listen, allow_cidr",
  );
});

Deno.test("cluster: names must follow the naming rule", () => {
  assertError(edit("  bob: {}", "  Bob: {}"), 11, "users.Bob", "bad user name 'Bob'", "lowercase");
  assertError(
    edit("cluster: acme", "cluster: Acme"),
    1,
    "cluster",
    "bad cluster name",
    "lowercase",
  );
  assertError(edit("[devs]", "[dev_s]"), 10, "users.alice.groups[0]", "bad group name 'dev_s'");
});

Deno.test("cluster: wrong types are explained in operator language", () => {
  assertError(
    edit("endpoint: 127.0.0.1:7101", "endpoint: 7101"),
    4,
    "nodes.n1.endpoint",
    "must be text like 127.0.0.1:7101",
  );
  assertError(edit("port: 80", "port: '80'"), 16, "services.web.port", "without quotes");
  assertError(edit("port: 80", "port: 70000"), 16, "services.web.port", "from 1 to 65535");
  assertError(edit("allow: [group", "allow: group"), 17, "services.web.allow", "must be a list");
  assertError(edit("  bob: {}", "  bob: yes"), 11, "users.bob", "must be a map like");
  assertError("cluster: acme\nusers: [alice]\n", 2, "users", "must be a map of user names");
  assertError("", 1, "", "must be a YAML map starting with 'cluster: NAME'");
  assertError(
    lines("cluster: acme", "users:", "  bob: { groups: devs }"),
    3,
    "users.bob.groups",
    "must be a list of group names",
  );
});

Deno.test("cluster: required fields name the missing key and show an example", () => {
  assertError(lines("nodes: {}"), 1, "cluster", "is required", "cluster: acme");
  assertError(lines("cluster: acme", "nodes:", "  n1: {}"), 3, "nodes.n1.endpoint", "endpoint:");
  assertError(lines("cluster: acme", "nodes:", "  n1:"), 3, "nodes.n1", "endpoint");
});

Deno.test("cluster: service on an undefined node", () => {
  assertError(
    edit("node: n2", "node: n3"),
    19,
    "services.ci.node",
    "node 'n3' is not defined",
    "florctl node add n3 --endpoint HOST:PORT",
  );
});

Deno.test("cluster: close misspellings get a suggestion", () => {
  const text = edit("user:bob", "user:bobb");
  assertError(
    text,
    17,
    "services.web.allow[1]",
    "user 'bobb' is not defined",
    "did you mean 'bob'",
  );
  assert.equal(closestMatch("endpont", ["endpoint", "ssh"]), "endpoint");
  assert.equal(closestMatch("n3", ["n1", "n2"]), undefined, "short names differ by design");
  assert.equal(closestMatch("Web", ["web"]), "web");
});

Deno.test("cluster: allow entries that are not principals", () => {
  assertError(
    edit("user:bob,", "bob,"),
    17,
    "services.web.allow[1]",
    "'bob' is not an allow entry",
    "user:NAME, group:NAME",
  );
  assertError(edit("user:bob,", "team:bob,"), 17, "services.web.allow[1]", "unknown kind 'team'");
  assertError(edit("user:bob,", "user:Bob,"), 17, "services.web.allow[1]", "bad name 'Bob'");
});

Deno.test("cluster: allow entries naming unknown identities", () => {
  assertError(
    edit("      - user:alice", "      - user:carol"),
    22,
    "services.ci.allow[0]",
    "user 'carol' is not defined",
    "florctl user add carol",
  );
  assertError(
    edit("service:ci,", "service:cd,"),
    17,
    "services.web.allow[2]",
    "service 'cd' is not defined",
    "florctl service add cd",
  );
  assertError(
    edit("gateway:office]", "gateway:home]"),
    17,
    "services.web.allow[3]",
    "gateway 'home' is not defined",
    "florctl gateway add home",
  );
});

Deno.test("cluster: a group no user belongs to", () => {
  assertError(
    edit("group:devs,", "group:ops,"),
    17,
    "services.web.allow[0]",
    "no user is in group 'ops'",
    "users.NAME.groups",
  );
});

Deno.test("cluster: nodes are not principals in allow lists", () => {
  const p = check(edit("      - user:alice", "      - node:n1")).problems;
  const e = only(p);
  assert.equal(e.line, 22);
  assert.equal(e.column, 9);
  assert.ok(e.message.includes("nodes are not principals"), e.message);
  assert.ok(e.message.includes("service:NAME"), e.message);
});

Deno.test("cluster: endpoints and targets must be host:port", () => {
  assertError(
    edit("127.0.0.1:7101", "127.0.0.1"),
    4,
    "nodes.n1.endpoint",
    "has no port",
    "HOST:PORT",
  );
  assertError(edit("127.0.0.1:7101", "127.0.0.1:0"), 4, "nodes.n1.endpoint", "1 to 65535");
  assertError(edit("ci.lan:9000", "ci.lan:99999"), 20, "services.ci.target", "1 to 65535");
  assertError(edit("ci.lan:9000", "'::1:9000'"), 20, "services.ci.target", "[::1]:8080");
  assertError(
    edit("192.168.1.10:1080", "192.168.1.300:1080"),
    24,
    "gateways.office.listen",
    "not an IPv4 address",
  );
  assertError(
    edit("root@203.0.113.10:22", "'root @host'"),
    5,
    "nodes.n1.ssh",
    "[user@]host[:port]",
  );
});

Deno.test("cluster: two nodes with the same endpoint", () => {
  assertError(
    edit("'[::1]:7102'", "127.0.0.1:7101"),
    7,
    "nodes.n2.endpoint",
    "already node 'n1''s endpoint (line 4)",
    "its own host:port",
  );
  // compared after normalising: [0:0:0:0:0:0:0:1] is ::1
  const text = edit("127.0.0.1:7101", "'[0:0:0:0:0:0:0:1]:7102'");
  assertError(text, 7, "nodes.n2.endpoint", "already node 'n1''s endpoint");
});

Deno.test("cluster: service port clash on one node", () => {
  assertError(
    edit("ci.lan:9000", "127.0.0.1:8080", edit("node: n2", "node: n1")),
    20,
    "services.ci.target",
    "service port clash",
    "service 'web'",
    "(line 15)",
  );
  // the same target on different nodes is two different machines' ports: fine
  assert.ok(check(edit("ci.lan:9000", "127.0.0.1:8080")).cluster);
});

Deno.test("cluster: a target that is its node's own endpoint", () => {
  assertError(
    edit("127.0.0.1:8080", "127.0.0.1:7101"),
    15,
    "services.web.target",
    "service port clash",
    "node 'n1''s own endpoint",
  );
});

Deno.test("cluster: an empty allow list is only a warning", () => {
  const r = check(edit("    allow:\n      - user:alice", "    allow: []"));
  assert.ok(r.cluster, "warnings do not stop the load");
  const w = only(r.problems, "warning");
  assert.equal(w.line, 21);
  assert.equal(w.path, "services.ci.allow");
  assert.ok(w.message.includes("nobody can reach service 'ci'"), w.message);
  assert.ok(w.message.includes("allow: [group:devs"), w.message);
  assert.ok(formatProblem(w).startsWith("cluster.yaml:21:5: warning: services.ci.allow: "));
  // a missing allow list is the same as an empty one
  const missing = check(edit("    allow:\n      - user:alice\n", ""));
  assert.equal(only(missing.problems, "warning").line, 18);
});

Deno.test("cluster: revoking an identity no longer in the cluster is only a warning", () => {
  const r = check(edit("principal: user:alice", "principal: user:zed"));
  assert.ok(r.cluster);
  const w = only(r.problems, "warning");
  assert.equal(w.line, 27);
  assert.equal(w.path, "revoked[0].principal");
  assert.ok(w.message.includes("user:zed is not in this cluster"), w.message);
  // a principal that does not parse is an error
  assertError(
    edit("principal: user:alice", "principal: alice"),
    27,
    "revoked[0].principal",
    "not a principal",
  );
});

Deno.test("cluster: revoked serials are hex, normalised to lowercase", () => {
  const c = loadCluster(edit("3FA2C4", "'3F:A2:C4'"), "cluster.yaml");
  assert.deepEqual(revokedSerials(c), new Set(["3fa2c4"]));
  assertError(edit("3FA2C4", "3FX2"), 26, "revoked[0].serial", "not a hex serial");
  // YAML reads 1234 as a number, which would lose leading zeros
  assertError(edit("3FA2C4", "1234"), 26, "revoked[0].serial", "in quotes");
  assertError(edit("3FA2C4", "'" + "a".repeat(41) + "'"), 26, "revoked[0].serial", "40 hex digits");
});

Deno.test("cluster: every problem is reported, in line order", () => {
  const text = lines(
    "cluster: acme",
    "nodes:",
    "  n1: { endpoint: 'nope' }", // 3
    "  n2: { endpoint: 127.0.0.1:1, shh: x }", // 4
    "services:",
    "  web: { node: n1, target: 127.0.0.1:80, port: 0, allow: [] }", // 6
  );
  const r = check(text);
  assert.deepEqual(r.problems.map((p) => [p.line, p.path]), [
    [3, "nodes.n1.endpoint"],
    [4, "nodes.n2.shh"],
    [6, "services.web.port"],
  ]);
  assert.ok(r.problems[1].message.includes("did you mean 'ssh'?"));
});

Deno.test("config_problems: locate falls back to the nearest existing ancestor", () => {
  const lc = new YAML.LineCounter();
  const doc = YAML.parseDocument(FULL, { lineCounter: lc });
  assert.deepEqual(locate(doc, lc, ["services", "web", "node"]), { line: 14, column: 5 });
  assert.deepEqual(locate(doc, lc, ["services", "web", "allow", 2]), { line: 17, column: 35 });
  assert.deepEqual(locate(doc, lc, ["services", "ci", "allow", 0]), { line: 22, column: 9 });
  assert.deepEqual(locate(doc, lc, ["services", "web", "missing"]), { line: 13, column: 3 });
  assert.deepEqual(locate(doc, lc, ["nope"]), { line: 1, column: 1 });
  assert.deepEqual(locate(doc, lc, ["revoked", 0, "date"]), { line: 29, column: 5 });
  assert.deepEqual(locate(doc, lc, ["revoked", 5]), { line: 25, column: 1 });
});

Deno.test("config_problems: parseYamlWithSchema works with any schema", () => {
  const schema = z.strictObject({ listen: z.string(), debug: z.boolean().optional() });
  const ok = parseYamlWithSchema("listen: a\n", "flor.yaml", schema);
  assert.deepEqual(ok.value, { listen: "a" });
  assert.deepEqual(ok.problems, []);
  const bad = parseYamlWithSchema("listen: a\ndebug: maybe\n", "flor.yaml", schema);
  assert.equal(bad.value, undefined);
  assert.equal(
    formatProblem(bad.problems[0]),
    "flor.yaml:2:1: debug: must be true or false, not the text 'maybe'",
  );
  const missing = parseYamlWithSchema("debug: true\n", "flor.yaml", schema);
  assert.equal(formatProblem(missing.problems[0]), "flor.yaml:1:1: listen: is required");
});

Deno.test("config_problems: aliases to undefined anchors are reported, not thrown", () => {
  const r = check("cluster: *name\n");
  assert.equal(r.cluster, undefined);
  assert.ok(r.problems.length > 0);
  assert.ok(r.problems.every((p) => p.severity === "error" && p.line === 1));
});

Deno.test("cluster: parseAllowEntry", () => {
  assert.deepEqual(parseAllowEntry("group:devs"), { kind: "group", name: "devs" });
  assert.deepEqual(parseAllowEntry("user:bob"), { kind: "user", name: "bob" });
  assert.deepEqual(parseAllowEntry("node:n1"), { kind: "node", name: "n1" });
  assert.throws(() => parseAllowEntry("devs"), /user:NAME, group:NAME/);
  assert.throws(() => parseAllowEntry("group:"), /bad name/);
});

Deno.test("cluster: an ssh target that ssh would read as an option is refused", () => {
  for (
    const bad of [
      "-oProxyCommand=touch${IFS}/tmp/x",
      "-x@host",
      "root@-oFoo",
      "root@$(touch${IFS}pwned)",
      "root@host;id",
    ]
  ) {
    const text = lines(
      "cluster: acme",
      "nodes:",
      "  n1:",
      "    endpoint: 127.0.0.1:7101",
      `    ssh: "${bad}"`,
    );
    const r = check(text);
    assert.ok(r.problems.some((p) => p.path === "nodes.n1.ssh" && p.line === 5), bad);
  }
});

Deno.test("cluster: gateways: public listen needs allow_public, CIDRs and client services", () => {
  const base = (gw: string[], svcAllow = "gateway:office") =>
    lines(
      "cluster: acme",
      "nodes:",
      "  n1: { endpoint: 127.0.0.1:7101 }",
      "services:",
      `  web: { node: n1, target: 127.0.0.1:8080, allow: [${svcAllow}] }`,
      "gateways:",
      "  office:",
      ...gw,
    );
  const ok = check(base(["    listen: 192.168.1.10:1080", "    allow_cidr: [192.168.1.0/24]"]));
  assert.deepEqual(ok.problems, []);
  const pub = check(base(["    listen: 203.0.113.7:1080", "    allow_cidr: [192.168.1.0/24]"]));
  assert.ok(pub.problems.some((p) => p.path === "gateways.office.listen" && p.line === 8));
  assert.equal(
    check(
      base([
        "    listen: 203.0.113.7:1080",
        "    allow_cidr: [0.0.0.0/0]",
        "    allow_public: true",
      ]),
    )
      .problems.length,
    0,
  );
  const badCidr = check(
    base(["    listen: 192.168.1.10:1080", "    allow_cidr: [192.168.1.5/24]"]),
  );
  assert.ok(badCidr.problems.some((p) => p.path === "gateways.office.allow_cidr[0]"));
  const clients = check(base([
    "    listen: 192.168.1.10:1080",
    "    allow_cidr: [192.168.1.0/24]",
    "    clients:",
    "      printer: { services: [web, nope] }",
  ], "group:none"));
  const msgs = clients.problems.map(formatProblem).join("\n");
  assert.match(msgs, /services\[1\]: service 'nope' is not defined/);
  assert.match(msgs, /does not allow gateway:office/);
});

Deno.test("cluster: a service target outside private networks is a warning", () => {
  const r = check(edit("127.0.0.1:8080", "198.51.100.7:8080"));
  const w = r.problems.find((p) => /neither loopback nor a private/.test(p.message));
  assert.ok(w, r.problems.map(formatProblem).join("\n"));
  assert.equal(w.severity, "warning");
});

import assert from "node:assert/strict";
import { type LoadedAgentConfig, parseAgentConfig } from "../../agent/config.ts";
import { ConfigError, type ConfigProblem, formatProblem } from "../../lib/config_problems.ts";

/** One string per line, so a line number is the array index + 1 (written after each line). */
function yaml(...ls: string[]): string {
  return ls.join("\n") + "\n";
}

const NODE = yaml(
  "version: 1", // 1
  "cluster: acme", // 2
  "ca: ca.pem", // 3
  "cluster_map: cluster.yaml", // 4
  "node: n1", // 5
  "listen:", // 6
  "  quic: 0.0.0.0:7101", // 7
  "  socks: 127.0.0.1:1080", // 8
  "  metrics: off", // 9
  "socks:", // 10
  "  default_identity: service:web", // 11
  "identities:", // 12
  "  - principal: node:n1", // 13
  "    cert: n1.crt", // 14
  "    key: n1.key", // 15
  "  - principal: service:web", // 16
  "    cert: web.crt", // 17
  "    key: web.key", // 18
  "log:", // 19
  "  level: debug", // 20
);

const USER = yaml(
  "version: 1", // 1
  "cluster: acme", // 2
  "ca: /etc/florete/ca.pem", // 3
  "cluster_map: cluster.yaml", // 4
  "listen:", // 5
  "  socks: '[::1]:1080'", // 6
  "identities:", // 7
  "  - principal: user:alice", // 8
  "    cert: alice.crt", // 9
  "    key: alice.key", // 10
  "    password_file: socks.passwd", // 11
);

/** `text` with `from` replaced by `to`; `from` must occur exactly once. */
function edit(text: string, from: string, to: string): string {
  assert.equal(text.split(from).length, 2, `'${from}' must occur once`);
  return text.replace(from, to);
}

function parse(text: string, file = "/etc/florete/flor.yaml"): LoadedAgentConfig {
  return parseAgentConfig(text, file);
}

/** Parses text that must fail; returns the problems (all errors) and the thrown message. */
function problemsOf(
  text: string,
  file = "flor.yaml",
): { problems: ConfigProblem[]; message: string } {
  try {
    parseAgentConfig(text, file);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `${e} is not a ConfigError`);
    return { problems: e.problems, message: e.message };
  }
  assert.fail("the config was accepted");
}

/** Asserts exactly one error at `line` with `path`, whose formatted form starts FILE:LINE:. */
function assertOneError(text: string, line: number, path: string, ...fragments: string[]): void {
  const { problems, message } = problemsOf(text);
  assert.equal(problems.length, 1, message);
  const p = problems[0];
  assert.equal(p.severity, "error");
  assert.equal(p.line, line, formatProblem(p));
  assert.equal(p.path, path, formatProblem(p));
  assert.ok(message.startsWith(`flor.yaml:${line}:`), message);
  for (const f of fragments) assert.ok(p.message.includes(f), `${formatProblem(p)}\nlacks: ${f}`);
}

const DEFAULT_LIMITS = {
  max_tunnels: 4096,
  max_tunnels_per_principal: 4096,
  max_socks_connections: 4096,
  connections_per_source_per_s: 20,
  connections_per_source_burst: 40,
  rss_mb_warn: 512,
  event_loop_lag_ms_warn: 250,
  open_fds_warn: 8192,
  rtt_ms_warn: 500,
  flow_mbytes_per_s_warn: 1,
};

const DEFAULT_TRANSPORT = { congestion: "bbr", udp_buffer_bytes: 7_500_000 };

Deno.test("config: limits can be tightened and must be positive whole numbers", () => {
  const text = NODE + "limits:\n  max_tunnels: 10\n";
  assert.equal(parse(text).config.limits.max_tunnels, 10);
  assert.equal(parse(text).config.limits.max_tunnels_per_principal, 4096);
  assert.throws(() => parse(NODE + "limits:\n  max_tunnels: -1\n"), ConfigError);
  assert.throws(() => parse(NODE + "limits:\n  max_tunels: 5\n"), ConfigError);
});

Deno.test("config: a node's flor.yaml parses", () => {
  const { config, file } = parse(NODE);
  assert.equal(file, "/etc/florete/flor.yaml");
  assert.deepEqual(config, {
    version: 1,
    cluster: "acme",
    ca: "ca.pem",
    cluster_map: "cluster.yaml",
    node: "n1",
    listen: { quic: "0.0.0.0:7101", socks: "127.0.0.1:1080", metrics: "off" },
    socks: { default_identity: "service:web" },
    identities: [
      { principal: "node:n1", cert: "n1.crt", key: "n1.key" },
      { principal: "service:web", cert: "web.crt", key: "web.key" },
    ],
    log: { level: "debug" },
    limits: DEFAULT_LIMITS,
    transport: DEFAULT_TRANSPORT,
    metrics: { allowed_hosts: [] },
    map_refresh_s: 60,
    forwards: [],
  });
});

Deno.test("config: a user's flor.yaml parses with defaults applied", () => {
  const { config } = parse(USER);
  assert.deepEqual(config, {
    version: 1,
    cluster: "acme",
    ca: "/etc/florete/ca.pem",
    cluster_map: "cluster.yaml",
    listen: { socks: "[::1]:1080", metrics: "off" },
    socks: {},
    identities: [
      {
        principal: "user:alice",
        cert: "alice.crt",
        key: "alice.key",
        password_file: "socks.passwd",
      },
    ],
    log: { level: "info" },
    limits: DEFAULT_LIMITS,
    transport: DEFAULT_TRANSPORT,
    metrics: { allowed_hosts: [] },
    map_refresh_s: 60,
    forwards: [],
  });
  assert.equal(config.node, undefined);
  assert.equal(config.listen.quic, undefined, "only nodes serve QUIC");
});

Deno.test("config: paths resolve relative to the file's directory", () => {
  const { resolve } = parse(NODE, "/etc/florete/flor.yaml");
  assert.equal(resolve("n1.key"), "/etc/florete/n1.key");
  assert.equal(resolve("certs/web.crt"), "/etc/florete/certs/web.crt");
  assert.equal(resolve("../shared/ca.pem"), "/etc/shared/ca.pem");
  assert.equal(resolve("/var/lib/florete/ca.pem"), "/var/lib/florete/ca.pem");
  assert.equal(parse(NODE, "bundle/n1/flor.yaml").resolve("n1.key"), "bundle/n1/n1.key");
  assert.equal(parse(NODE, "flor.yaml").resolve("n1.key"), "n1.key");
});

Deno.test("config: a node without its own identity is refused at identities", () => {
  const text = edit(NODE, "  - principal: node:n1", "  - principal: node:n2");
  assertOneError(text, 12, "identities", "no identity for node:n1", "re-create the bundle");
});

Deno.test("config: a node without listen.quic is refused at listen", () => {
  const text = edit(NODE, "  quic: 0.0.0.0:7101\n", "");
  assertOneError(text, 6, "listen.quic", "a node needs listen.quic");
  // The same file without `node:` is a client and needs no QUIC address.
  parse(edit(text, "node: n1\n", ""));
});

Deno.test("config: default_identity must be one of the identities", () => {
  const text = edit(NODE, "default_identity: service:web", "default_identity: user:bob");
  assertOneError(text, 11, "socks.default_identity", "user:bob is not one of identities");
  const bad = edit(NODE, "default_identity: service:web", "default_identity: bob");
  // the principal parser's own message, not a vaguer one
  assertOneError(
    bad,
    11,
    "socks.default_identity",
    "'bob' is not a principal: write <kind>:<name>",
  );
});

Deno.test("config: every semantic problem is reported, each on its own line", () => {
  let text = edit(NODE, "  - principal: node:n1", "  - principal: node:n2");
  text = edit(text, "  quic: 0.0.0.0:7101\n", "");
  text = edit(text, "default_identity: service:web", "default_identity: user:bob");
  const { problems, message } = problemsOf(text);
  assert.deepEqual(
    problems.map((p) => [p.line, p.path]).sort(),
    [[6, "listen.quic"], [10, "socks.default_identity"], [11, "identities"]].sort(),
  );
  assert.equal(message.split("\n").length, 3);
});

Deno.test("config: unknown keys are refused at their line", () => {
  assertOneError(
    edit(NODE, "node: n1", "node: n1\nnodes: n2"),
    6,
    "nodes",
    "unknown key 'nodes' at the top level; did you mean 'node'?",
  );
  assertOneError(
    edit(NODE, "  metrics: off", "  metric: off"),
    9,
    "listen.metric",
    "unknown key 'metric'",
    "did you mean 'metrics'?",
  );
  assertOneError(
    edit(NODE, "    key: web.key", "    key: web.key\n    passwd: x"),
    19,
    "identities[1].passwd",
    "unknown key 'passwd'",
  );
  assertOneError(yaml(USER, "tunnels: 4"), 13, "tunnels", "unknown key 'tunnels'");
});

Deno.test("config: bad addresses are refused at their line", () => {
  // each with the host:port parser's own message: what is wrong and how to write it
  const bad: [string, string][] = [
    ["0.0.0.0", "'0.0.0.0' has no port; write HOST:PORT"],
    ["0.0.0.0:0", "the port must be a number from 1 to 65535"],
    ["0.0.0.0:65536", "the port must be a number from 1 to 65535"],
    ["::1:7101", "put an IPv6 address in brackets, e.g. [::1]:8080"],
    ["host:port", "'host:port': the port must be a number from 1 to 65535"],
  ];
  for (const [text, message] of bad) {
    assertOneError(edit(NODE, "quic: 0.0.0.0:7101", `quic: '${text}'`), 7, "listen.quic", message);
  }
  assertOneError(edit(NODE, "socks: 127.0.0.1:1080", "socks: 127.0.0.1"), 8, "listen.socks");
  assertOneError(edit(NODE, "metrics: off", "metrics: on"), 9, "listen.metrics");
  // "off" is only for the SOCKS and metrics listeners.
  assertOneError(edit(NODE, "quic: 0.0.0.0:7101", "quic: off"), 7, "listen.quic");
});

Deno.test("config: schema errors name the line of the field", () => {
  assertOneError(edit(NODE, "version: 1", "version: 2"), 1, "version");
  assertOneError(edit(NODE, "cluster: acme\n", ""), 1, "cluster", "is required");
  assertOneError(edit(NODE, "  level: debug", "  level: loud"), 20, "log.level", "must be one of");
  assertOneError(
    edit(NODE, "    cert: web.crt", "    cert: ''"),
    17,
    "identities[1].cert",
    "must not be empty",
  );
  assertOneError(
    edit(USER, "principal: user:alice", "principal: alice"),
    8,
    "identities[0].principal",
  );
  const none = yaml(
    "version: 1",
    "cluster: acme",
    "ca: c",
    "cluster_map: m",
    "listen: {}",
    "identities: []",
  );
  assertOneError(none, 6, "identities", "at least 1");
});

Deno.test("config: YAML syntax errors and duplicate keys report their line", () => {
  const tab = problemsOf(edit(NODE, "  socks: 127.0.0.1:1080", "\tsocks: 127.0.0.1:1080"));
  assert.ok(tab.problems.some((p) => p.line === 8), tab.message);
  const dup = problemsOf(edit(NODE, "node: n1", "node: n1\nnode: n2"));
  assert.equal(dup.problems.length, 1, dup.message);
  assert.equal(dup.problems[0].line, 6, dup.message);
  assert.match(dup.problems[0].message, /duplicate name 'node'.*line 5/);
});

Deno.test("config: an empty file is refused", () => {
  const { problems } = problemsOf("");
  assert.ok(problems.length >= 1);
  assert.ok(problems.every((p) => p.file === "flor.yaml" && p.line >= 1));
});

const USER_WITH_IDENTITY = edit(
  USER,
  "identities:",
  "socks:\n  default_identity: user:alice\nidentities:",
);

Deno.test("config: forwards take PORT or BIND:PORT and SERVICE[.flor][:PORT]", () => {
  const text = USER_WITH_IDENTITY +
    "forwards:\n  - listen: 15432\n    service: db.flor:5432\n" +
    "  - listen: '[::1]:16379'\n    service: redis\n";
  assert.deepEqual(parse(text).config.forwards, [
    { listen: "15432", service: "db.flor:5432" },
    { listen: "[::1]:16379", service: "redis" },
  ]);
});

Deno.test("config: a forward on a non-loopback address is refused with its line", () => {
  const text = USER_WITH_IDENTITY + "forwards:\n  - listen: 0.0.0.0:15432\n    service: db\n";
  assertOneError(text, 15, "forwards.0.listen", "not a loopback address", "lends");
});

Deno.test("config: a forward to something that is not a service name is refused", () => {
  const text = USER_WITH_IDENTITY + "forwards:\n  - listen: 15432\n    service: db.example.com\n";
  assertOneError(text, 16, "forwards.0.service", "does not name a service", "SERVICE.acme.flor");
});

Deno.test("config: two forwards on one local address are refused", () => {
  const text = USER_WITH_IDENTITY +
    "forwards:\n  - listen: 15432\n    service: db\n  - listen: 127.0.0.1:15432\n    service: web\n";
  assertOneError(text, 17, "forwards.1.listen", "already forwarded by forwards[0]");
});

Deno.test("config: forwards need an identity to lend (socks.default_identity)", () => {
  const text = USER + "forwards:\n  - listen: 15432\n    service: db\n";
  assertOneError(text, 13, "forwards.0", "default_identity");
});

Deno.test("config: transport defaults to BBR and a 7.5 MB UDP buffer", () => {
  assert.deepEqual(parse(NODE).config.transport, DEFAULT_TRANSPORT);
  const cubic = parse(NODE + "transport:\n  congestion: cubic\n  udp_buffer_bytes: 4194304\n");
  assert.deepEqual(cubic.config.transport, { congestion: "cubic", udp_buffer_bytes: 4194304 });
});

Deno.test("config: an unknown congestion controller is refused at its line", () => {
  assertOneError(NODE + "transport:\n  congestion: reno\n", 22, "transport.congestion", "bbr");
  assertOneError(NODE + "transport:\n  udp_buffer_bytes: 0\n", 22, "transport.udp_buffer_bytes");
});

Deno.test("config: metrics.allowed_hosts takes host names, not URLs or ports", () => {
  const ok = parse(NODE + "metrics:\n  allowed_hosts: [prom.example.com, 10.0.0.5]\n");
  assert.deepEqual(ok.config.metrics.allowed_hosts, ["prom.example.com", "10.0.0.5"]);
  assert.deepEqual(parse(NODE).config.metrics.allowed_hosts, []);
  assertOneError(
    NODE + "metrics:\n  allowed_hosts: ['prom.example.com:9090']\n",
    22,
    "metrics.allowed_hosts[0]",
    "without a port",
  );
});

/**
 * The pure halves of `florctl status` and `florctl doctor`: health rules, the table, and
 * every doctor verdict from made-up inputs (no sockets, no cluster directory).
 */
import assert from "node:assert/strict";
import { loadCluster } from "../../../lib/cluster.ts";
import type { ConfigProblem } from "../../../lib/config_problems.ts";
import { udpBufferCheck } from "../../../ctl/commands/doctor.ts";
import { nodePaths } from "../../../lib/platform.ts";
import {
  agentProbeScript,
  certificateExpiryChecks,
  CLOCK_SKEW_LIMIT_MS,
  clockSkewCheck,
  clockSkewMs,
  clusterYamlChecks,
  configHashCheck,
  doctorReport,
  formatChecks,
  parseAgentProbe,
  reachabilityCheck,
  revokedStillConfiguredChecks,
  versionSkewCheck,
} from "../../../ctl/commands/doctor.ts";
import {
  formatBytes,
  formatDuration,
  formatStatusTable,
  formatTable,
  nodeRow,
  statusReport,
} from "../../../ctl/commands/status.ts";
import type { NodeProbe } from "../../../ctl/support/node_probe.ts";
import type { NodeStatus } from "../../../ctl/support/operator.ts";

const DAY_MS = 86_400_000;
const NOW = new Date("2026-03-01T12:00:00Z");

function nodeStatus(over: Partial<NodeStatus> = {}): NodeStatus {
  return {
    node: "n1",
    version: "0.1.0",
    commit: "abc",
    config_hash: "aaaa",
    started_at: "2026-03-01T11:00:00Z",
    uptime_s: 3600,
    pid: 42,
    tunnels_open: 2,
    connections: 1,
    rss_bytes: 50 * 1048576,
    time: NOW.toISOString(),
    unclean_restarts: 0,
    previous_exit: "clean",
    bytes_in: 1536,
    bytes_out: 10,
    auth_failures_last_hour: 3,
    ...over,
  };
}

function up(node: string, over: Partial<NodeStatus> = {}): NodeProbe {
  return {
    node,
    endpoint: "127.0.0.1:7101",
    status: nodeStatus({ node, ...over }),
    rttMs: 1.5,
    sentAtMs: NOW.getTime(),
  };
}

// ---- status: health rules ----

Deno.test("status: a node that answers with the expected config is healthy", () => {
  const r = nodeRow(up("n1"), "aaaa");
  assert.equal(r.reachable, true);
  assert.equal(r.config_ok, true);
  assert.equal(r.healthy, true);
  assert.deepEqual(r.problems, []);
  assert.equal(r.rtt_ms, 1.5);
  assert.equal(r.rss_bytes, 50 * 1048576);
  assert.equal(r.auth_failures_last_hour, 3);
});

Deno.test("status: unreachable is unhealthy and carries the PeerError code and message", () => {
  const r = nodeRow({
    node: "n2",
    endpoint: "127.0.0.1:7102",
    error: { code: "unreachable", message: "n2 (127.0.0.1:7102) did not answer" },
  }, "bbbb");
  assert.equal(r.reachable, false);
  assert.equal(r.healthy, false);
  assert.equal(r.error_code, "unreachable");
  assert.match(r.error!, /^unreachable: n2 .* did not answer/);
  assert.equal(r.expected_config_hash, "bbbb");
  assert.equal(r.config_ok, undefined);
  assert.equal(r.problems.length, 1);
  assert.match(r.problems[0], /florctl doctor/);
});

Deno.test("status: a config hash mismatch is unhealthy and says to deploy that node", () => {
  const r = nodeRow(up("n1", { config_hash: "old1" }), "new2");
  assert.equal(r.config_ok, false);
  assert.equal(r.healthy, false);
  assert.match(r.problems[0], /old1.*new2.*florctl deploy --node n1/);
});

Deno.test("status: unclean restarts are unhealthy only while the last exit was unclean", () => {
  const crashed = nodeRow(up("n1", { unclean_restarts: 2, previous_exit: "unclean" }), "aaaa");
  assert.equal(crashed.healthy, false);
  assert.match(crashed.problems[0], /unclean exit \(2 unclean/);
  const recovered = nodeRow(up("n1", { unclean_restarts: 2, previous_exit: "clean" }), "aaaa");
  assert.equal(recovered.healthy, true);
  // The rule needs both: a counted unclean restart and a last exit that was unclean.
  assert.equal(nodeRow(up("n1", { previous_exit: "unclean" }), "aaaa").healthy, true);
});

Deno.test("status: the report is healthy only when every node is", () => {
  const ok = nodeRow(up("n1"), "aaaa");
  const bad = nodeRow(up("n2", { config_hash: "x" }), "aaaa");
  assert.equal(statusReport([ok]).healthy, true);
  assert.equal(statusReport([ok, bad]).healthy, false);
  assert.equal(statusReport([]).healthy, true);
});

Deno.test("status: table columns line up and problems follow, one line each", () => {
  const report = statusReport([
    nodeRow(up("n1"), "aaaa"),
    nodeRow(up("node-two", { config_hash: "zzzz" }), "aaaa"),
    nodeRow(
      { node: "n3", endpoint: "x:1", error: { code: "handshake", message: "bad cert" } },
      "c",
    ),
  ]);
  const lines = formatStatusTable(report).split("\n");
  assert.match(lines[0], /^NODE\s+STATE\s+RTT\s+VERSION\s+CONFIG\s+UPTIME/);
  // Every row starts its STATE column where the header does.
  const col = lines[0].indexOf("STATE");
  for (const l of lines.slice(1, 4)) assert.match(l.slice(col), /^(up|UNHEALTHY|DOWN)/);
  assert.match(lines[1], /1\.5 ms.*aaaa ok.*1h0m.*1\.5 KiB.*50 MiB/);
  assert.match(lines[2], /zzzz MISMATCH/);
  assert.match(lines[3], /^n3\s+DOWN/);
  assert.ok(lines.some((l) => l.startsWith("node-two: runs config zzzz")));
  assert.ok(lines.some((l) => l.startsWith("n3: handshake: bad cert")));
  assert.equal(lines.at(-1), "2 of 3 node(s) unhealthy");
});

Deno.test("status: formatting helpers", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(300 * 1048576), "300 MiB");
  assert.equal(formatDuration(7), "7s");
  assert.equal(formatDuration(65), "1m5s");
  assert.equal(formatDuration(3725), "1h2m");
  assert.equal(formatDuration(93784), "1d2h");
  assert.equal(
    formatTable(["A", "NUM"], [["xyz", "5"], ["b", "123"]], [false, true]),
    [
      "A    NUM",
      "xyz    5",
      "b    123",
    ].join("\n"),
  );
});

// ---- doctor: clock skew ----

Deno.test("doctor: clock skew is measured against the middle of the round trip", () => {
  // Sent at t, answered after 200 ms: the node stamped its time ~100 ms after t.
  assert.equal(clockSkewMs(1_000_100, 1_000_000, 200), 0);
  assert.equal(clockSkewMs(1_000_000, 1_000_000, 200), -100);
  assert.equal(clockSkewMs(1_040_100, 1_000_000, 200), 40_000);
});

Deno.test("doctor: clock skew over 30 s fails, at or under passes, both directions", () => {
  const sent = NOW.getTime();
  const at = (skew: number, rtt = 0) => new Date(sent + rtt / 2 + skew).toISOString();
  assert.equal(clockSkewCheck("n1", at(0), sent, 0).verdict, "ok");
  assert.equal(clockSkewCheck("n1", at(CLOCK_SKEW_LIMIT_MS), sent, 0).verdict, "ok");
  const ahead = clockSkewCheck("n1", at(CLOCK_SKEW_LIMIT_MS + 1000), sent, 0);
  assert.equal(ahead.verdict, "fail");
  assert.match(ahead.detail, /31\.0 s ahead of/);
  assert.match(ahead.fix, /NTP/);
  const behind = clockSkewCheck("n1", at(-45_000), sent, 0);
  assert.equal(behind.verdict, "fail");
  assert.match(behind.detail, /45\.0 s behind/);
});

Deno.test("doctor: a long RTT is not mistaken for clock skew", () => {
  const sent = NOW.getTime();
  // 20 s round trip; the node's clock is right: it stamped 10 s after we sent.
  const nodeTime = new Date(sent + 10_000).toISOString();
  assert.equal(clockSkewCheck("n1", nodeTime, sent, 20_000).verdict, "ok");
  // Ignoring the RTT would put the node 10 s ahead: under a 5 s limit the correction matters.
  assert.equal(clockSkewCheck("n1", nodeTime, sent, 20_000, 5_000).verdict, "ok");
  assert.equal(clockSkewCheck("n1", nodeTime, sent, 0, 5_000).verdict, "fail");
});

Deno.test("doctor: a node time that does not parse is a warning", () => {
  assert.equal(clockSkewCheck("n1", "undefined", NOW.getTime(), 1).verdict, "warn");
});

// ---- doctor: version skew ----

Deno.test("doctor: one release everywhere is ok", () => {
  const c = versionSkewCheck("0.1.0", [{ node: "n1", version: "0.1.0" }, {
    node: "n2",
    version: "0.1.0",
  }]);
  assert.equal(c.verdict, "ok");
  assert.match(c.detail, /florctl and 2 node\(s\) run 0\.1\.0/);
});

Deno.test("doctor: different releases warn, listing who runs what, and fix the odd ones", () => {
  const c = versionSkewCheck("0.1.0", [
    { node: "n1", version: "0.1.0" },
    { node: "n2", version: "0.0.9" },
    { node: "n3", version: "0.0.9" },
  ]);
  assert.equal(c.verdict, "warn");
  assert.equal(c.detail, "different releases: 0.1.0 (florctl, n1); 0.0.9 (n2, n3)");
  assert.match(c.fix, /florctl enroll node n2.*florctl enroll node n3/);
  assert.doesNotMatch(c.fix, /node n1/);
  // Nodes agree with each other but not with florctl: still skew.
  assert.equal(versionSkewCheck("0.2.0", [{ node: "n1", version: "0.1.0" }]).verdict, "warn");
});

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

// ---- doctor: reachability ----

const reach = { node: "n2", endpoint: "203.0.113.7:7101", operator: "user:admin" };

Deno.test("doctor: a node that answers is ok", () => {
  assert.equal(reachabilityCheck(reach).verdict, "ok");
});

Deno.test("doctor: handshake failure is a wrong identity at the endpoint", () => {
  const c = reachabilityCheck({ ...reach, error: { code: "handshake", message: "bad cert" } });
  assert.equal(c.verdict, "fail");
  assert.match(c.detail, /wrong identity.*203\.0\.113\.7:7101.*node:n2/);
  assert.match(c.fix, /florctl enroll node n2/);
});

Deno.test("doctor: auth_denied names the operator identity", () => {
  const c = reachabilityCheck({ ...reach, error: { code: "auth_denied", message: "revoked" } });
  assert.match(c.detail, /refused the operator identity user:admin/);
  assert.match(c.fix, /florctl deploy --node n2/);
});

Deno.test("doctor: unreachable without ssh cannot tell agent down from UDP blocked", () => {
  const c = reachabilityCheck({
    ...reach,
    error: { code: "unreachable", message: "n2 did not answer" },
    agent: { kind: "no_ssh", why: "nodes.n2 has no ssh: in cluster.yaml" },
  });
  assert.equal(c.verdict, "fail");
  assert.match(c.detail, /cannot tell whether the agent is down or UDP is blocked/);
  assert.match(c.detail, /no ssh:/);
  assert.match(c.fix, /UDP port 7101/);
  assert.match(c.fix, /florctl enroll node n2/);
});

Deno.test("doctor: unreachable with the agent running over ssh means UDP blocked", () => {
  const c = reachabilityCheck({
    ...reach,
    error: { code: "unreachable", message: "n2 did not answer" },
    agent: { kind: "running", detail: "pid 99" },
  });
  assert.match(c.detail, /agent runs \(pid 99\) but does not answer on UDP/);
  assert.match(c.detail, /firewall/);
  assert.match(c.fix, /UDP port 7101/);
  assert.doesNotMatch(c.fix, /enroll/);
});

Deno.test("doctor: unreachable with the agent stopped over ssh means agent down", () => {
  const c = reachabilityCheck({
    ...reach,
    error: { code: "unreachable", message: "n2 did not answer" },
    agent: { kind: "down", detail: "no process with pid 99" },
  });
  assert.match(c.detail, /agent down: no process with pid 99/);
  assert.match(c.fix, /^`florctl enroll node n2`/);
});

Deno.test("doctor: ssh failing during the probe is reported in the detail", () => {
  const c = reachabilityCheck({
    ...reach,
    error: { code: "unreachable", message: "n2 did not answer" },
    agent: { kind: "ssh_failed", target: "root@203.0.113.7", message: "Connection refused" },
  });
  assert.match(c.detail, /ssh to root@203\.0\.113\.7 failed too \(Connection refused\)/);
});

Deno.test("doctor: agent probe scripts per supervisor, and their output", () => {
  const paths = nodePaths("linux", "/tmp/h1");
  const none = agentProbeScript("none", paths);
  assert.match(none, /cat '\/tmp\/h1\/var\/lib\/florete\/flor\.pid'/);
  assert.match(none, /kill -0 "\$pid"/);
  assert.match(agentProbeScript("systemd", paths), /systemctl is-active flor\.service/);
  assert.match(agentProbeScript("launchd", paths), /launchctl print system\/dev\.florete\.flor/);
  assert.deepEqual(parseAgentProbe("noise\nflorete-probe: running pid 12\n"), {
    kind: "running",
    detail: "pid 12",
  });
  assert.deepEqual(parseAgentProbe("florete-probe: down systemctl says flor.service is failed"), {
    kind: "down",
    detail: "systemctl says flor.service is failed",
  });
  assert.equal(parseAgentProbe("sh: 1: systemctl: not found"), undefined);
});

// ---- doctor: the rest ----

Deno.test("doctor: config hash mismatch fails with florctl deploy --node", () => {
  assert.equal(configHashCheck("n1", "aaaa", "aaaa").verdict, "ok");
  const c = configHashCheck("n1", "aaaa", "bbbb");
  assert.equal(c.verdict, "fail");
  assert.match(c.fix, /^florctl deploy --node n1/);
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

Deno.test("doctor: report is not ok when any check fails; output lines and fixes", () => {
  const checks = [
    configHashCheck("n1", "a", "a"),
    versionSkewCheck("0.2.0", [{ node: "n1", version: "0.1.0" }]),
    configHashCheck("n2", "a", "b"),
  ];
  assert.equal(doctorReport(checks).ok, false);
  assert.equal(doctorReport(checks.slice(0, 2)).ok, true);
  const lines = formatChecks(checks).split("\n");
  const starts = (i: number, prefix: string) =>
    assert.ok(lines[i].startsWith(prefix), `line ${i}: ${lines[i]}`);
  starts(0, "OK    config_hash   n1: runs config a");
  starts(1, "WARN  version_skew  cluster: different releases");
  starts(2, "      fix: install florctl's release 0.2.0 on n1");
  starts(3, "FAIL  config_hash   n2: ");
  starts(4, "      fix: florctl deploy --node n2");
  assert.equal(lines[5], "1 ok, 1 warning(s), 1 failure(s)");
});

Deno.test("doctor: a QUIC receive buffer below its target warns with the sysctl", () => {
  const c = udpBufferCheck("n1", {
    udp_receive_buffer_bytes: 4_194_304,
    udp_buffer_target_bytes: 7_500_000,
    udp_receive_errors_last_min: 0,
  })!;
  assert.equal(c.verdict, "warn");
  assert.equal(c.check, "udp_buffer");
  assert.match(c.detail, /4194304 bytes, below its target 7500000/);
  assert.match(c.fix, /sysctl -w net\.core\.rmem_max=7500000 net\.core\.wmem_max=7500000/);
  assert.match(c.fix, /florctl enroll node n1/);
});

Deno.test("doctor: UDP overflows in the last minute warn even with a large buffer", () => {
  const c = udpBufferCheck("n1", {
    udp_receive_buffer_bytes: 7_500_000,
    udp_buffer_target_bytes: 7_500_000,
    udp_receive_errors_last_min: 42,
  })!;
  assert.equal(c.verdict, "warn");
  assert.match(c.detail, /^42 UDP datagram\(s\) dropped/);
  assert.match(c.fix, /transport\.udp_buffer_bytes/);
});

Deno.test("doctor: a raised buffer without overflows is ok; an unset one warns", () => {
  const ok = udpBufferCheck("n1", {
    udp_receive_buffer_bytes: 7_500_000,
    udp_buffer_target_bytes: 7_500_000,
    udp_receive_errors_last_min: 0,
  })!;
  assert.equal(ok.verdict, "ok");
  const unset = udpBufferCheck("n1", { udp_buffer_target_bytes: 7_500_000 })!;
  assert.equal(unset.verdict, "warn");
  assert.match(unset.detail, /udp\.buffer_unset/);
  // A node on a release that does not report it gets no line at all.
  assert.equal(udpBufferCheck("n1", {}), undefined);
});

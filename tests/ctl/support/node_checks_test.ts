/** Doctor's checks of the nodes, from made-up probe results (no sockets). */
import assert from "node:assert/strict";
import {
  CLOCK_SKEW_LIMIT_MS,
  clockSkewCheck,
  clockSkewMs,
  configHashCheck,
  reachabilityCheck,
  udpBufferCheck,
  versionSkewCheck,
} from "../../../ctl/support/node_checks.ts";

const NOW = new Date("2026-03-01T12:00:00Z");

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

// ---- doctor: the rest ----

Deno.test("doctor: config hash mismatch fails with florctl deploy --node", () => {
  assert.equal(configHashCheck("n1", "aaaa", "aaaa").verdict, "ok");
  const c = configHashCheck("n1", "aaaa", "bbbb");
  assert.equal(c.verdict, "fail");
  assert.match(c.fix, /^florctl deploy --node n1/);
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

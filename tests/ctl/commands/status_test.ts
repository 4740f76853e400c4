/** The pure half of `florctl status`: health rules and the table, from made-up probes. */
import assert from "node:assert/strict";
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

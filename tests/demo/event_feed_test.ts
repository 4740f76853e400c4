import assert from "node:assert/strict";
import { feedLine } from "./event_feed.ts";

const at = "2026-12-02T03:04:05.678Z";

Deno.test("event_feed: tunnels read as who → what, with the node or the target", () => {
  assert.equal(
    feedLine("alice", {
      "@timestamp": at,
      message: "tunnel.open",
      side: "client",
      principal: "user:alice",
      service: "web",
      node: "n1",
    }),
    "03:04:05  alice  tunnel opened    user:alice → web via node n1",
  );
  assert.equal(
    feedLine("n1", {
      "@timestamp": at,
      message: "tunnel.close",
      principal: "user:alice",
      service: "web",
      bytes_out: 80,
      bytes_in: 3000,
      ms: 12,
    }),
    "03:04:05  n1     tunnel closed    user:alice → web: 80 B out, 2.9 KiB in, 12 ms",
  );
  assert.equal(
    feedLine("n1", {
      "@timestamp": at,
      message: "tunnel.close",
      side: "server",
      principal: "user:alice",
      service: "web",
      bytes_to_target: 80,
      bytes_from_target: 3000,
      ms: 12,
    }),
    "03:04:05  n1     tunnel closed    user:alice → web: 80 B to target, 2.9 KiB back, 12 ms",
  );
});

Deno.test("event_feed: refusals say why", () => {
  const line = feedLine("alice", {
    "@timestamp": at,
    message: "socks.refused",
    principal: "user:alice",
    dest: "payroll.flor:8081",
    reason: "not_allowed",
    detail: "user:alice is not in the allow list of service 'payroll'",
  });
  assert.equal(
    line,
    "03:04:05  alice  REFUSED          user:alice → payroll.flor:8081: not_allowed — " +
      "user:alice is not in the allow list of service 'payroll'",
  );
});

Deno.test("event_feed: routine info is left out, unknown warnings are shown", () => {
  assert.equal(feedLine("n1", { message: "config.reloaded", level: "INFO" }), undefined);
  assert.equal(
    feedLine("n1", { "@timestamp": at, message: "resource.high", level: "WARN", rss_mb: 600 }),
    '03:04:05  n1     WARN resource.high {"rss_mb":600}',
  );
});

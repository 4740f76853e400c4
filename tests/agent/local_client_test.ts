import assert from "node:assert/strict";
import { fetchLocalStatus, formatLocalStatus } from "../../agent/local_client.ts";
import type { StatusDocument } from "../../lib/request_bodies.ts";

const doc: StatusDocument = {
  node: "n1",
  identities: ["node:n1"],
  version: "1.0.0",
  commit: "abc1234",
  config_hash: "cafe",
  started_at: "2026-01-01T00:00:00.000Z",
  uptime_s: 100,
  time: "2026-01-01T00:01:40.000Z",
  pid: 42,
  starts: 3,
  unclean_restarts: 1,
  previous_exit: "unclean",
  tunnels_open: 2,
  connections: 4,
  bytes_in: 10,
  bytes_out: 20,
  auth_failures_last_hour: 5,
  rss_bytes: 50 * 1048576,
  cpu_seconds: 1.25,
  event_loop_lag_ms: 2,
  peers: [{ node: "n2", identity: "node:n1", up: false, since: 0, connects: 1, lastError: "x" }],
  forwards: [],
  recent_problems: [{ time: "t", level: "warn", event: "peer.down", node: "n2" }],
};

/** A local HTTP server answering /status with `body` (a real socket on 127.0.0.1). */
async function withStatusServer(body: unknown, f: (addr: string) => Promise<void>) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => Response.json(body),
  );
  try {
    await f(`127.0.0.1:${server.addr.port}`);
  } finally {
    await server.shutdown();
  }
}

Deno.test("local_client: flor status reads the agent's document as typed fields", async () => {
  await withStatusServer(doc, async (addr) => {
    const s = await fetchLocalStatus(addr);
    const text = formatLocalStatus(s, 1000);
    assert.match(text, /^agent {5}node:n1 \(identities: node:n1\)$/m);
    assert.match(text, /started 3 times, 1 unclean \(the last exit was unclean\)/);
    assert.match(text, /2 open, 10 bytes in, 20 bytes out, 4 peers connected, 5 auth failures/);
    assert.match(text, /rss 50 MiB, cpu 1\.3s/);
    assert.match(text, /n2 {11}DOWN for 1s as node:n1 — x/);
    assert.match(text, /t warn peer\.down \{"node":"n2"\}/);
  });
});

Deno.test("local_client: a reply that is not a status document is a named error", async () => {
  await withStatusServer({ hello: "world" }, async (addr) => {
    await assert.rejects(
      () => fetchLocalStatus(addr),
      /\/status is not an agent's status document \(version: .*\): is another program/,
    );
  });
});

import assert from "node:assert/strict";
import { createAgentMetrics } from "../../agent/agent_metrics.ts";
import { type ConfigSource, createConfigHolder } from "../../agent/config_source.ts";
import type { PeerPool } from "../../agent/peer_pool.ts";
import type { ResourceMonitor } from "../../agent/resources.ts";
import type { RunState } from "../../agent/run_state.ts";
import type { Runtime } from "../../agent/runtime.ts";
import { statusDocument, type StatusSources } from "../../agent/status_document.ts";
import { StatusSchema } from "../../lib/request_bodies.ts";

function sources(runtime: ConfigSource<Runtime>): StatusSources {
  const metrics = createAgentMetrics();
  metrics.tunnelsOpen.add({ side: "server" }, 2);
  metrics.tunnelsOpen.add({ side: "client" }, 1);
  metrics.bytes.inc({ side: "server", direction: "in" }, 100);
  return {
    runtime,
    run: {
      counters: { starts: 3, unclean_restarts: 1 },
      previous: { unclean: true },
    } as unknown as RunState,
    startedAt: new Date("2026-01-01T00:00:00Z"),
    metrics,
    resources: {
      last: () => ({
        rss_bytes: 50e6,
        heap_used_bytes: 20e6,
        cpu_seconds: 1,
        event_loop_lag_ms: 2,
      }),
    } as ResourceMonitor,
    peers: {
      peers: () => [{ node: "n2", identity: "node:n1", up: true, since: 0, connects: 1 }],
    } as unknown as PeerPool,
  };
}

function runtime(configHash: string): Runtime {
  return {
    loaded: { config: { node: "n1", transport: { udp_buffer_bytes: 4 << 20 } } },
    identities: new Map([["node:n1", {}]]),
    configHash,
    node: { id: "node:n1" },
  } as unknown as Runtime;
}

Deno.test("status_document: what a node sends parses as what its readers expect", () => {
  const s = sources(createConfigHolder(runtime("abc")));
  const now = new Date("2026-01-01T00:01:40Z");
  const doc = statusDocument(s, { connections: 4, auth_failures_last_hour: 5 }, now, 1234);
  const read = StatusSchema.parse(JSON.parse(JSON.stringify(doc)));
  assert.equal(read.node, "n1");
  assert.equal(read.config_hash, "abc");
  assert.equal(read.uptime_s, 100);
  assert.equal(read.pid, 1234);
  assert.equal(read.tunnels_open, 3);
  assert.equal(read.connections, 4);
  assert.equal(read.auth_failures_last_hour, 5);
  assert.equal(read.bytes_in, 100);
  assert.equal(read.previous_exit, "unclean");
  assert.equal(read.rss_bytes, 50e6);
  assert.deepEqual(read.peers?.map((p) => p.node), ["n2"]);
});

Deno.test("status_document: a client agent has no server counts; a reload shows at once", () => {
  const holder = createConfigHolder(runtime("abc"));
  const s = sources(holder);
  const doc = statusDocument(s, undefined, new Date(), 1);
  assert.equal(doc.connections, 0);
  assert.equal(doc.auth_failures_last_hour, 0);
  holder.replace(runtime("def"));
  assert.equal(statusDocument(s, undefined, new Date(), 1).config_hash, "def");
});

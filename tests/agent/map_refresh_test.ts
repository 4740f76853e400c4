import assert from "node:assert/strict";
import { createConfigHolder } from "../../agent/config_source.ts";
import { startMapRefresh } from "../../agent/map_refresh.ts";
import type { PeerPool } from "../../agent/peer_pool.ts";
import type { Runtime } from "../../agent/runtime.ts";
import { eventLog } from "../../lib/log.ts";

/** Just what a timer round reads: no nodes, so a round only asks the pool who is up. */
function runtime(mapRefreshS: number): Runtime {
  return {
    loaded: { config: { map_refresh_s: mapRefreshS } },
    view: { cluster: { nodes: {} } },
    identities: new Map(),
  } as unknown as Runtime;
}

Deno.test("map refresh: a reload's new map_refresh_s applies without a restart", async () => {
  const holder = createConfigHolder(runtime(3600));
  let rounds = 0;
  const peers = { peers: () => (rounds++, []) } as unknown as PeerPool;
  const refresh = startMapRefresh(holder, peers, eventLog("map"), () => Promise.resolve(undefined));
  try {
    assert.deepEqual(holder.subscribers(), ["map_refresh"]);
    holder.replace(runtime(1));
    const deadline = Date.now() + 3_000;
    while (rounds === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(rounds > 0, "a round ran on the new 1 s interval, not the old hour");
  } finally {
    refresh.stop();
  }
  assert.deepEqual(holder.subscribers(), [], "stop() leaves the holder");
});

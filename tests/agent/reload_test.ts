import assert from "node:assert/strict";
import { createConfigHolder } from "../../agent/config_source.ts";
import { checkReload, serializedReload } from "../../agent/reload.ts";
import type { Runtime } from "../../agent/runtime.ts";
import type { EventLog } from "../../lib/log.ts";

/** Just what a reload reads of a runtime. */
function runtime(o: { hash: string; node?: string; cert?: string; cluster?: string }): Runtime {
  return {
    loaded: {
      file: "/etc/florete/flor.yaml",
      config: { cluster: o.cluster ?? "acme", node: o.node, listen: { quic: "0.0.0.0:4433" } },
    },
    configHash: o.hash,
    node: o.node ? { id: `node:${o.node}`, certPem: o.cert ?? "cert-1" } : undefined,
    view: { revoked: new Set() },
    revokedIdentities: [],
  } as unknown as Runtime;
}

function recordingLog() {
  const events: { event: string; fields?: Record<string, unknown> }[] = [];
  const rec = (event: string, fields?: Record<string, unknown>) => events.push({ event, fields });
  const log: EventLog = { debug: rec, info: rec, warn: rec, error: rec };
  return { log, events, names: () => events.map((e) => e.event) };
}

function health() {
  let n = 0;
  return { reloadFailed: false, failures: { inc: () => n++ }, count: () => n };
}

Deno.test("reload: a bundle for another node or cluster is refused", () => {
  const current = runtime({ hash: "a", node: "n1" });
  assert.throws(
    () => checkReload(current, runtime({ hash: "b", node: "n2" })),
    /the bundle is now for n2 in 'acme': restart flor to change what it runs as/,
  );
  assert.throws(
    () => checkReload(current, runtime({ hash: "b", node: "n1", cluster: "other" })),
    /restart flor/,
  );
});

Deno.test("reload: the node keeps its certificate; a new one is reported as needing a restart", () => {
  const current = runtime({ hash: "a", node: "n1", cert: "cert-1" });
  const { next, needsRestart } = checkReload(
    current,
    runtime({ hash: "b", node: "n1", cert: "2" }),
  );
  assert.equal(next.node, current.node, "the QUIC server stays bound to the running certificate");
  assert.equal(next.configHash, "b", "everything else is the new bundle's");
  assert.deepEqual(needsRestart, ["node certificate"]);
});

Deno.test("reload: a subscriber that throws leaves the old runtime, not ready, counted", async () => {
  const old = runtime({ hash: "a" });
  const holder = createConfigHolder(old);
  const seen: string[] = [];
  holder.onChange("quic_server", (next) => seen.push(`quic ${next.configHash}`));
  holder.onChange("forwards", (next) => {
    if (next.configHash === "bad") throw new Error("port busy");
  });
  const { log, events } = recordingLog();
  const h = health();
  let bundle = runtime({ hash: "bad" });
  const reload = serializedReload(holder, () => Promise.resolve(bundle), log, h);

  const err = await reload();
  assert.match(String(err), /forwards could not apply the new configuration \(port busy\)/);
  assert.equal(holder.current(), old, "the old runtime serves");
  assert.deepEqual(seen, ["quic bad", "quic a"], "the QUIC server was put back on the old one");
  assert.equal(h.reloadFailed, true, "/readyz fails");
  assert.equal(h.count(), 1, "flor_reload_failures_total counts it");
  assert.deepEqual(events.map((e) => e.event), ["config.reload_failed"]);
  assert.equal(events[0].fields?.file, "/etc/florete/flor.yaml");

  bundle = runtime({ hash: "good" });
  assert.equal(await reload(), undefined);
  assert.equal(holder.current().configHash, "good");
  assert.equal(h.reloadFailed, false, "a good reload makes the agent ready again");
  assert.equal(h.count(), 1);
  const reloaded = events.find((e) => e.event === "config.reloaded");
  assert.deepEqual(reloaded?.fields?.applied_by, ["quic_server", "forwards"]);
});

Deno.test("reload: a bundle that does not load tells no subscriber", async () => {
  const holder = createConfigHolder(runtime({ hash: "a" }));
  let told = 0;
  holder.onChange("socks_server", () => told++);
  const h = health();
  const { log, names } = recordingLog();
  const reload = serializedReload(holder, () => Promise.reject(new Error("bad yaml")), log, h);
  assert.match(String(await reload()), /bad yaml/);
  assert.equal(told, 0);
  assert.equal(holder.current().configHash, "a");
  assert.deepEqual(names(), ["config.reload_failed"]);
  assert.equal(h.reloadFailed, true);
});

Deno.test("reload: reloads run one at a time, in the order asked", async () => {
  const holder = createConfigHolder(runtime({ hash: "0" }));
  const order: string[] = [];
  let release!: () => void;
  const slow = new Promise<void>((r) => release = r);
  let n = 0;
  const load = async (current: Runtime) => {
    const mine = ++n;
    order.push(`load ${mine} on ${current.configHash}`);
    if (mine === 1) await slow; // the first read takes long (a slow disk)
    return runtime({ hash: String(mine) });
  };
  const reload = serializedReload(holder, load, recordingLog().log, health());
  const first = reload();
  const second = reload();
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(order, ["load 1 on 0"], "the second waits for the first");
  release();
  await Promise.all([first, second]);
  assert.deepEqual(order, ["load 1 on 0", "load 2 on 1"]);
  assert.equal(holder.current().configHash, "2", "the later reload's files win");
});

/**
 * What the operator must see and survive, against real processes: a node killed with -9
 * mid-transfer and restarted, metrics that parse and move, a flood of bogus connections.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { GC_DEBOUNCE_MS } from "../../lib/memory.ts";
import { TRIM_CHECK_MS } from "../../lib/malloc_trim.ts";
import { agentFlags, extendAgentConfig, withFixture } from "./fixture.ts";
import {
  echoRoundTrip,
  flor,
  freeTcpPort,
  randomBytes,
  sha256Hex,
  socksConnect,
} from "./harness.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };

/** Rounds of a quiet then a flooded transfer (see the flood test). */
const FLOOD_ROUNDS = 3;
/** Each transfer's size: about a second of echo here, long enough to span flood batches. */
const FLOOD_TRANSFER_MIB = 16;
/** The flood client's niceness: below the agents and this test, as an attacker's CPU is
 * another machine's; at the same priority on two cores the flood measured the contention of
 * its own TLS handshakes with the transfer (40% of the quiet rate) more than the node. */
const FLOOD_NICE = 10;
/** Bogus handshakes made before a flooded transfer starts, and again after it ends: the
 * flood is in full swing (past the per-source burst of 40) while the transfer runs. */
const FLOOD_SWING = 100;

/** Minimal Prometheus text-format parser: every line must be a comment or a sample. */
export function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    let m;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*$/.exec(line))) continue;
    if (
      (m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(
        line,
      ))
    ) {
      assert.ok(!types.has(m[1]), `TYPE twice for ${m[1]}`);
      types.set(m[1], m[2]);
      continue;
    }
    m =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*",?)*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/
        .exec(line);
    assert.ok(m, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    assert.ok(types.has(m[1]), `sample ${m[1]} before its TYPE line`);
    samples.set(m[1] + (m[2] ?? ""), Number(m[3]));
  }
  return samples;
}

async function scrape(port: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return parsePrometheus(await res.text());
}

Deno.test(
  "e2e: a node killed with -9 is seen down, fails fast, comes back",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const state = join(fx.root, "n1-state");
      const n1Flags = [...agentFlags().flags, "--state", state];
      let n1 = await start(join(fx.bundles.n1, "flor.yaml"), n1Flags);
      const user = agentFlags();
      const alice = await start(join(fx.bundles.alice, "flor.yaml"), user.flags);

      // A transfer in flight when the node dies.
      const s = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
      assert.equal(s.reply, 0);
      await s.conn.write(new Uint8Array(64 * 1024));
      await alice.waitFor("peer.up", (e) => e.node === "n1");

      const killedAt = Date.now();
      await n1.stop("SIGKILL");
      const down = await alice.waitFor("peer.down", (e) => e.node === "n1", 6000);
      const detectMs = Date.parse(down["@timestamp"] as string) - killedAt;
      assert.ok(detectMs <= 3200, `peer.down ${detectMs} ms after kill -9`);
      s.conn.close();

      const t0 = Date.now();
      const failed = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
      const failMs = Date.now() - t0;
      failed.conn.close();
      assert.equal(failed.reply, 0x03);
      assert.ok(failMs < 3000, `SOCKS reply for a down node took ${failMs} ms`);

      n1 = await start(join(fx.bundles.n1, "flor.yaml"), n1Flags);
      const unclean = await n1.waitFor("agent.unclean_restart");
      assert.equal(unclean.unclean_restarts, 1);
      const started = Date.parse(
        n1.events.find((e) => e.message === "agent.started")!["@timestamp"] as string,
      );
      // Within 2 s of the node's return a new request succeeds (the pool reconnects itself).
      let okAt = 0;
      while (Date.now() - started < 5000) {
        const r = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
        if (r.reply === 0) {
          okAt = Date.now();
          const back = await echoRoundTrip(r.conn, new TextEncoder().encode("back"));
          r.conn.close();
          assert.equal(new TextDecoder().decode(back), "back");
          break;
        }
        r.conn.close();
        await new Promise((res) => setTimeout(res, 100));
      }
      assert.ok(okAt > 0, "no successful request after the restart");
      assert.ok(okAt - started < 2000, `first success ${okAt - started} ms after the restart`);
      await alice.waitFor("peer.up", (e) => e.node === "n1" && e.connects === 2);
    }),
);

Deno.test(
  "e2e: /metrics parses as Prometheus text and counters move with traffic",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const node = agentFlags({ metrics: true });
      await start(join(fx.bundles.n1, "flor.yaml"), node.flags);
      const user = agentFlags({ metrics: true });
      await start(join(fx.bundles.alice, "flor.yaml"), user.flags);
      const [nodeMetrics, userMetrics, socks] = [node.metrics!, user.metrics!, user.socks];
      for (const port of [nodeMetrics, userMetrics]) {
        assert.equal(await (await fetch(`http://127.0.0.1:${port}/healthz`)).text(), "ok\n");
        assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
      }
      const before = await scrape(userMetrics);
      const nodeBefore = await scrape(nodeMetrics);
      const data = randomBytes(1024 * 1024);
      const s = await socksConnect(socks, "echo.flor", fx.ports.echo);
      const back = await echoRoundTrip(s.conn, data);
      s.conn.close();
      assert.equal(await sha256Hex(back), await sha256Hex(data));
      await new Promise((r) => setTimeout(r, 200)); // let tunnel.close land
      const after = await scrape(userMetrics);
      const nodeAfter = await scrape(nodeMetrics);
      const get = (m: Map<string, number>, k: string) => m.get(k) ?? 0;
      const out = 'flor_tunnel_bytes_total{side="client",direction="out"}';
      const opened = 'flor_tunnels_opened_total{side="client",service="echo"}';
      assert.ok(get(after, out) - get(before, out) >= data.length, "bytes out did not move");
      assert.equal(get(after, opened) - get(before, opened), 1);
      const nodeIn = 'flor_tunnel_bytes_total{side="server",direction="in"}';
      assert.ok(get(nodeAfter, nodeIn) - get(nodeBefore, nodeIn) >= data.length);
      assert.equal(get(after, 'flor_peer_up{node="n1"}'), 1);
      assert.ok(get(after, 'flor_peer_rtt_seconds{node="n1"}') > 0, "no RTT measured");
      assert.ok(get(after, "flor_resident_memory_bytes") > 0);

      const st = await flor(["status", "--metrics", `127.0.0.1:${userMetrics}`]);
      assert.equal(st.code, 0, st.stderr);
      assert.match(st.stdout, /n1 +up/);
      assert.match(st.stdout, /rtt \d+\.\d ms/);
    }),
);

Deno.test(
  "e2e: a flood of bogus connections from one source is rate-limited while a transfer continues",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const node = agentFlags({ metrics: true });
      const n1 = await start(join(fx.bundles.n1, "flor.yaml"), node.flags);
      const nodeMetrics = node.metrics!;
      const user = agentFlags();
      await start(join(fx.bundles.alice, "flor.yaml"), user.flags);
      const pid = n1.child.pid;
      const rss = () =>
        Number(/VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))![1]) * 1024;

      const transfer = async (mib: number) => {
        const data = randomBytes(mib * 1024 * 1024);
        const s = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
        assert.equal(s.reply, 0);
        const t0 = performance.now();
        const back = await echoRoundTrip(s.conn, data);
        const seconds = (performance.now() - t0) / 1000;
        s.conn.close();
        assert.equal(await sha256Hex(back), await sha256Hex(data), "transfer corrupted");
        return (mib / seconds);
      };
      // The flood: handshakes that never authenticate, as fast as one source can make them.
      let attempts = 0;
      const startFlood = () => {
        const child = new Deno.Command("nice", {
          args: [
            "-n",
            String(FLOOD_NICE),
            Deno.execPath(),
            "run",
            "-A",
            join(import.meta.dirname!, "flood_client.ts"),
            String(fx.ports.n1),
            join(fx.dir, "pki", "ca.crt"),
          ],
          stdout: "piped",
          stderr: "null",
        }).spawn();
        const base = attempts;
        const counting = (async () => {
          for await (const line of child.stdout.pipeThrough(new TextDecoderStream())) {
            const n = Number(line.trim().split("\n").at(-1));
            if (n > 0) attempts = base + n;
          }
        })();
        return {
          /** Resolves once FLOOD_SWING more handshakes were made. */
          async swing() {
            const from = attempts;
            while (attempts - from < FLOOD_SWING) await new Promise((r) => setTimeout(r, 20));
          },
          async stop() {
            child.kill("SIGTERM");
            await child.status;
            await counting;
          },
        };
      };
      // Quiet and flooded transfers alternate, and each side keeps its best: the load of
      // other processes on this shared machine changes by the second, and one baseline taken
      // before one flooded transfer compared two different machines (here, under 3 busy
      // loops, the baseline alone moved from 18 to 41 MiB/s between runs).
      const quiet: number[] = [];
      const during: number[] = [];
      let rssBefore = 0;
      for (let round = 0; round < FLOOD_ROUNDS; round++) {
        quiet.push(await transfer(FLOOD_TRANSFER_MIB));
        if (round === 0) rssBefore = rss();
        const flood = startFlood();
        try {
          await flood.swing();
          during.push(await transfer(FLOOD_TRANSFER_MIB));
          await flood.swing(); // and kept going past the transfer
        } finally {
          await flood.stop();
        }
      }
      const [baseline, flooded] = [Math.max(...quiet), Math.max(...during)];
      // What the flood left behind, not what it still holds: closed connections are freed at
      // the agent's debounced collection (lib/memory.ts) and glibc gives the memory back at its
      // next trim check (lib/malloc_trim.ts). Three flood rounds read 74 MB right after the
      // last one in a clean-clone CI run; a leak stays after the wait.
      const rssAtFloodEnd = rss();
      await new Promise((r) => setTimeout(r, GC_DEBOUNCE_MS + 2 * TRIM_CHECK_MS));
      const rssAfter = rss();

      const m = parsePrometheus(
        await (await fetch(`http://127.0.0.1:${nodeMetrics}/metrics`)).text(),
      );
      const limited = m.get('flor_rate_limited_total{what="connection"}') ?? 0;
      assert.ok(limited > 0, `no connection was rate-limited out of ${attempts} attempts`);
      const logged = n1.events.filter((e) => e.message === "quic.rate_limited").length;
      assert.ok(
        logged < limited,
        `${logged} log lines for ${limited} refusals: logs not rate-limited`,
      );
      assert.ok(
        rssAfter - rssBefore < 64 * 1024 * 1024,
        `node RSS grew ${rssAfter - rssBefore} bytes (${
          rssAtFloodEnd - rssBefore
        } at the end of the flood)`,
      );
      const ratio = flooded / baseline;
      console.log(
        `flood: ${attempts} handshakes, ${limited} rate-limited, ${logged} logged; ` +
          `transfer ${baseline.toFixed(0)} → ${flooded.toFixed(0)} MiB/s (${
            (ratio * 100).toFixed(0)
          }%), best of ${FLOOD_ROUNDS}: quiet ${quiet.map((x) => x.toFixed(0))}, ` +
          `flooded ${during.map((x) => x.toFixed(0))}; node RSS +${
            ((rssAtFloodEnd - rssBefore) / 1e6).toFixed(1)
          } MB at the flood's end, +${((rssAfter - rssBefore) / 1e6).toFixed(1)} MB settled`,
      );
      // The flood generator shares this machine's two cores with both agents, so this bound is
      // looser than the 80% aimed for on a real node; the ratio is printed above.
      assert.ok(ratio > 0.3, `transfer fell to ${(ratio * 100).toFixed(0)}% during the flood`);
    }),
);

Deno.test(
  "e2e: hard caps refuse new tunnels with 0x01 instead of falling over",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const config = await extendAgentConfig(
        fx.bundles.n1,
        "limits:\n  max_tunnels_per_principal: 2\n",
      );
      const n1 = await start(config, agentFlags().flags);
      const user = agentFlags();
      await start(join(fx.bundles.alice, "flor.yaml"), user.flags);
      const held = [];
      for (let i = 0; i < 2; i++) {
        const s = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
        assert.equal(s.reply, 0);
        held.push(s.conn);
      }
      const third = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
      third.conn.close();
      assert.equal(third.reply, 0x01);
      await n1.waitFor("tunnel.over_capacity", (e) => e.principal === "user:alice");
      held.pop()!.close();
      await new Promise((r) => setTimeout(r, 300));
      const again = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
      assert.equal(again.reply, 0, "a freed slot was not given back");
      again.conn.close();
      for (const c of held) c.close();
    }),
);

Deno.test(
  "e2e: flor reload uses the local control endpoint, only with the owner's token",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const metricsPort = freeTcpPort();
      const state = join(fx.root, "n1-state");
      const config = join(fx.bundles.n1, "flor.yaml");
      // `flor reload` finds the running agent by the same metrics address and state dir.
      const local = ["--metrics", `127.0.0.1:${metricsPort}`, "--state", state];
      const n1 = await start(config, ["--socks", `127.0.0.1:${freeTcpPort()}`, ...local]);
      const reload = () => flor(["reload", "--config", config, ...local]);
      const token = join(state, "control.token");
      assert.equal((await Deno.stat(token)).mode! & 0o777, 0o600);

      const r = await reload();
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), "reloaded");
      await n1.waitFor("config.reloaded");

      const forged = await fetch(`http://127.0.0.1:${metricsPort}/control/reload`, {
        method: "POST",
        headers: { authorization: "Bearer 00" },
      });
      assert.equal(forged.status, 403);
      await forged.body?.cancel();
      const get = await fetch(`http://127.0.0.1:${metricsPort}/control/reload`);
      assert.equal(get.status, 405);
      await get.body?.cancel();

      // A broken map: the reload is refused and says so; the old configuration keeps serving.
      const map = join(fx.bundles.n1, "cluster.yaml");
      const good = await Deno.readTextFile(map);
      await Deno.writeTextFile(map, "cluster: [broken\n");
      const bad = await reload();
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /reload failed, the old configuration keeps serving/);
      await Deno.writeTextFile(map, good);
    }),
);

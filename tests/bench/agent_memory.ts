/**
 * Where an agent's memory goes, phase by phase: a user agent and a node agent on loopback,
 * then (1) idle with one warm QUIC connection, (2) TUNNELS idle tunnels held open (one byte
 * echoed on each), (3) TUNNELS × 1 MiB sent at once to a sink (the bench's loopback load),
 * (4) one FLOW_MIB flow. For each phase and agent: resident memory now and the phase's peak
 * (VmHWM, reset between phases through /proc/PID/clear_refs), and the anonymous part.
 *
 *   deno run --allow-all tests/bench/agent_memory.ts
 *   TUNNELS=200 FLOW_MIB=256 AGENT_ENV='{"MALLOC_ARENA_MAX":"2"}' deno run -A ...
 *
 * AGENT_ENV (JSON) is given to both agents: e.g. MALLOC_ARENA_MAX or DENO_V8_FLAGS, to measure
 * one change at a time. Linux only (reads /proc/PID/status). Root to reset VmHWM (else the
 * peaks are since start).
 */
import { join } from "node:path";
import { agentFlags, buildFixture } from "../e2e/fixture.ts";
import {
  echoRoundTrip,
  ExactReader,
  freeTcpPort,
  socksConnect,
  startFlor,
} from "../e2e/harness.ts";

const TUNNELS = Number(Deno.env.get("TUNNELS") ?? 200);
const BUSY = Number(Deno.env.get("BUSY") ?? 200);
const FLOW_MIB = Number(Deno.env.get("FLOW_MIB") ?? 256);
const AGENT_ENV: Record<string, string> = JSON.parse(Deno.env.get("AGENT_ENV") ?? "{}");
/** Time for the agents to settle (lib/memory.ts's debounced GC, lazily freed buffers). */
const SETTLE_MS = 3_000;
const MIB = 1024 * 1024;
/** Each write of the load: as the bench client's. */
const WRITE_BYTES = 64 * 1024;

interface Mem {
  rss: number;
  peak: number;
  anon: number;
}

function memory(pid: number): Mem {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)![1]) * 1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM"), anon: kb("RssAnon") };
}

function resetPeak(pid: number): void {
  try {
    Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
  } catch {
    // not root: the peaks below are since start
  }
}

const mb = (n: number) => (n / 1e6).toFixed(1);

/** A TCP sink: reads each connection to EOF, then closes it. */
function startSink(): { port: number; close(): void } {
  const port = freeTcpPort();
  const l = Deno.listen({ hostname: "127.0.0.1", port });
  (async () => {
    for await (const c of l) {
      (async () => {
        const buf = new Uint8Array(256 * 1024);
        try {
          while ((await c.read(buf)) !== null) { /* discard */ }
        } catch (e) {
          console.error(`sink: ${e}`);
        } finally {
          try {
            c.close();
          } catch { /* closed */ }
        }
      })();
    }
  })().catch(() => {});
  return { port, close: () => l.close() };
}

async function send(conn: Deno.TcpConn, bytes: number): Promise<void> {
  const chunk = new Uint8Array(WRITE_BYTES);
  for (let sent = 0; sent < bytes;) {
    sent += await conn.write(chunk.subarray(0, Math.min(chunk.length, bytes - sent)));
  }
  await conn.closeWrite();
  const buf = new Uint8Array(16);
  while ((await conn.read(buf)) !== null) { /* until the sink closes */ }
  conn.close();
}

const sink = startSink();
const fx = await buildFixture([{ name: "sink", node: "n1", port: sink.port, allow: "group:devs" }]);
const agents: Awaited<ReturnType<typeof startFlor>>[] = [];
const held: Deno.TcpConn[] = [];
try {
  const node = await startFlor(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags, AGENT_ENV);
  agents.push(node);
  const user = agentFlags();
  const alice = await startFlor(join(fx.bundles.alice, "flor.yaml"), user.flags, AGENT_ENV);
  agents.push(alice);
  const pids = { user: alice.child.pid, node: node.child.pid };
  const rows: string[] = [];
  const phase = async (name: string, work: () => Promise<void>) => {
    for (const pid of Object.values(pids)) resetPeak(pid);
    const t0 = performance.now();
    await work();
    const s = ((performance.now() - t0) / 1000).toFixed(2);
    const during = { user: memory(pids.user), node: memory(pids.node) };
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const after = { user: memory(pids.user), node: memory(pids.node) };
    for (const who of ["user", "node"] as const) {
      rows.push(
        `${name.padEnd(26)} ${who.padEnd(5)} ${s.padStart(6)} s  peak ${mb(during[who].peak)}  ` +
          `rss at end ${mb(during[who].rss)} (anon ${mb(during[who].anon)})  settled ` +
          `${mb(after[who].rss)}`,
      );
    }
  };
  await phase("idle, warm connection", async () => {
    const warm = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
    await echoRoundTrip(warm.conn, Uint8Array.of(1));
    warm.conn.close();
  });
  await phase(`${TUNNELS} idle tunnels held`, async () => {
    for (let i = 0; i < TUNNELS; i++) {
      const c = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
      if (c.reply !== 0) throw new Error(`SOCKS reply ${c.reply} on tunnel ${i}`);
      // One byte each way, and no EOF: the tunnel stays open.
      await c.conn.write(Uint8Array.of(i & 0xff));
      await new ExactReader(c.conn).read(1);
      held.push(c.conn);
    }
  });
  for (const c of held.splice(0)) c.close();
  await phase(`${BUSY} × 1 MiB at once`, async () => {
    await Promise.all(Array.from({ length: BUSY }, async (_, i) => {
      const c = await socksConnect(user.socks, "sink.flor", sink.port);
      if (c.reply !== 0) throw new Error(`SOCKS reply ${c.reply} on tunnel ${i}`);
      await send(c.conn, MIB);
    }));
  });
  await phase(`one flow of ${FLOW_MIB} MiB`, async () => {
    const c = await socksConnect(user.socks, "sink.flor", sink.port);
    await send(c.conn, FLOW_MIB * MIB);
  });
  console.log(`agent memory (MB; env ${JSON.stringify(AGENT_ENV)}):\n${rows.join("\n")}`);
} finally {
  for (const c of held) c.close();
  await Promise.all(agents.map((a) => a.stop()));
  await fx.cleanup();
  sink.close();
}

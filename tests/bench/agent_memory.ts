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
 *
 * The same phases then run through the floor (tests/bench/memory_floor.ts: the same two hops,
 * one reused buffer per tunnel direction, nothing else), started with the agents' V8 flags:
 * what Deno itself holds. FLOOR=0 skips it. Each process samples itself
 * (agent/memory_sampler.ts); for each phase the sample with the highest RSS is split into its
 * parts: file-backed pages (Deno's code), the V8 heap, ArrayBuffers (`external`), the rest of
 * glibc malloc's arenas and mmapped blocks (quinn, tokio, Deno's runtime; free bytes malloc
 * keeps included) and what is left (thread stacks, V8's code space, anything mmapped directly).
 */
import { join } from "node:path";
import { AGENT_V8_FLAGS_ARG } from "../../lib/memory.ts";
import { nodeServerName } from "../../lib/identity.ts";
import { agentFlags, buildFixture, type Fixture } from "../e2e/fixture.ts";
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
const FLOOR = Deno.env.get("FLOOR") !== "0";
/** SERIES=1: also print every sample of each phase (MB), to see when the peak happens. */
const SERIES = Deno.env.get("SERIES") === "1";
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

/** One relay pair under test: the agents or the floor. */
interface Pair {
  name: string;
  socks: number;
  pids: { user: number; node: number };
  samples: { user: string; node: string };
  /** The SOCKS destination for the echo server and for the sink. */
  echo: [string, number];
  sink: [string, number];
  stop(): Promise<void>;
}

async function startAgents(fx: Fixture, sinkPort: number, dir: string): Promise<Pair> {
  const samples = { user: join(dir, "user.jsonl"), node: join(dir, "node.jsonl") };
  const env = (file: string) => ({ ...AGENT_ENV, FLOR_MEMORY_SAMPLE: file });
  const node = await startFlor(
    join(fx.bundles.n1, "flor.yaml"),
    agentFlags().flags,
    env(samples.node),
  );
  const user = agentFlags();
  const alice = await startFlor(join(fx.bundles.alice, "flor.yaml"), user.flags, env(samples.user))
    .catch(async (e) => {
      await node.stop();
      throw e;
    });
  return {
    name: "florete",
    socks: user.socks,
    pids: { user: alice.child.pid, node: node.child.pid },
    samples,
    echo: ["echo.flor", fx.ports.echo],
    sink: ["sink.flor", sinkPort],
    stop: async () => void await Promise.all([alice.stop(), node.stop()]),
  };
}

/** Starts `memory_floor.ts ARGS` and reads the port it prints. */
async function spawnFloor(args: string[], env: Record<string, string>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", AGENT_V8_FLAGS_ARG, join(import.meta.dirname!, "memory_floor.ts"), ...args],
    env: { ...AGENT_ENV, ...env },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`memory_floor.ts ${args[0]} exited before it was ready`);
    out += value;
  }
  reader.releaseLock();
  return { child, port: Number(out.trim()) };
}

async function startFloor(fx: Fixture, sinkPort: number, dir: string): Promise<Pair> {
  const b = fx.bundles.n1;
  const samples = { user: join(dir, "floor-user.jsonl"), node: join(dir, "floor-node.jsonl") };
  const node = await spawnFloor(
    ["node", join(b, "certs/node-n1.crt"), join(b, "keys/node-n1.key")],
    { FLOR_MEMORY_SAMPLE: samples.node },
  );
  const front = await spawnFloor(
    ["socks", String(node.port), join(b, "ca.crt"), nodeServerName("acme", "n1")],
    { FLOR_MEMORY_SAMPLE: samples.user },
  );
  return {
    name: "floor",
    socks: front.port,
    pids: { user: front.child.pid, node: node.child.pid },
    samples,
    echo: ["echo", fx.ports.echo],
    sink: ["sink", sinkPort],
    async stop() {
      for (const p of [front.child, node.child]) {
        p.kill("SIGTERM");
        await p.status;
      }
    },
  };
}

type Sample = Record<string, number>;

function samplesOf(file: string, from: number, to: number): Sample[] {
  let text = "";
  try {
    text = Deno.readTextFileSync(file);
  } catch {
    return [];
  }
  return text.split("\n").filter((l) => l).map((l) => JSON.parse(l) as Sample)
    .filter((s) => s.t >= from && s.t <= to);
}

/** The sample with the highest RSS, split into its parts (MB). */
function parts(samples: Sample[]): string {
  if (samples.length === 0) return "no samples";
  const s = samples.reduce((a, b) => b.rss > a.rss ? b : a);
  const malloc = s.malloc_arena + s.malloc_mmapped;
  const mallocOther = malloc - s.external;
  const rest = s.rss_anon - s.heap_total - malloc;
  return `at max sampled rss ${mb(s.rss)}: file ${mb(s.rss_file)} + anon ${mb(s.rss_anon)} = ` +
    `v8 heap ${mb(s.heap_total)} + ArrayBuffers ${mb(s.external)} (pool idle ` +
    `${mb(s.pool_idle)}) + other malloc ${mb(mallocOther)} (free in it ${mb(s.malloc_free)}) + ` +
    `rest ${mb(rest)}; malloc_trim calls so far ${s.trims ?? "-"} (${
      (s.trim_ms ?? 0).toFixed(1)
    } ms)`;
}

function series(samples: Sample[]): string {
  const t0 = samples[0]?.t ?? 0;
  return samples.map((s) =>
    `          ${String(s.t - t0).padStart(5)} ms rss ${mb(s.rss)} heap ${mb(s.heap_total)} ` +
    `ab ${mb(s.external)} malloc ${mb(s.malloc_arena + s.malloc_mmapped)} (free ` +
    `${mb(s.malloc_free)}) busy ${s.busy_directions} trims ${s.trims ?? "-"}`
  ).join("\n");
}

async function runPhases(pair: Pair, rows: string[]): Promise<void> {
  const held: Deno.TcpConn[] = [];
  const phase = async (name: string, work: () => Promise<void>) => {
    for (const pid of Object.values(pair.pids)) resetPeak(pid);
    const t0 = performance.now();
    const from = Date.now();
    await work();
    const to = Date.now() + 60; // the sample after the end (SAMPLE_MS)
    const s = ((performance.now() - t0) / 1000).toFixed(2);
    const during = { user: memory(pair.pids.user), node: memory(pair.pids.node) };
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const after = { user: memory(pair.pids.user), node: memory(pair.pids.node) };
    for (const who of ["user", "node"] as const) {
      rows.push(
        `${pair.name.padEnd(7)} ${name.padEnd(22)} ${who.padEnd(4)} ${s.padStart(6)} s  ` +
          `peak ${mb(during[who].peak)}  rss at end ${mb(during[who].rss)} (anon ` +
          `${mb(during[who].anon)})  settled ${mb(after[who].rss)}\n` +
          `        ${parts(samplesOf(pair.samples[who], from, to))}`,
      );
      if (SERIES) rows.push(series(samplesOf(pair.samples[who], from, to)));
    }
  };
  const [echoHost, echoPort] = pair.echo;
  const [sinkHost, sinkPort] = pair.sink;
  await phase("idle, warm connection", async () => {
    const warm = await socksConnect(pair.socks, echoHost, echoPort);
    await echoRoundTrip(warm.conn, Uint8Array.of(1));
    warm.conn.close();
  });
  try {
    await phase(`${TUNNELS} idle tunnels held`, async () => {
      for (let i = 0; i < TUNNELS; i++) {
        const c = await socksConnect(pair.socks, echoHost, echoPort);
        if (c.reply !== 0) throw new Error(`SOCKS reply ${c.reply} on tunnel ${i}`);
        // One byte each way, and no EOF: the tunnel stays open.
        await c.conn.write(Uint8Array.of(i & 0xff));
        await new ExactReader(c.conn).read(1);
        held.push(c.conn);
      }
    });
  } finally {
    for (const c of held.splice(0)) c.close();
  }
  await phase(`${BUSY} × 1 MiB at once`, async () => {
    await Promise.all(Array.from({ length: BUSY }, async (_, i) => {
      const c = await socksConnect(pair.socks, sinkHost, sinkPort);
      if (c.reply !== 0) throw new Error(`SOCKS reply ${c.reply} on tunnel ${i}`);
      await send(c.conn, MIB);
    }));
  });
  await phase(`one flow of ${FLOW_MIB} MiB`, async () => {
    const c = await socksConnect(pair.socks, sinkHost, sinkPort);
    await send(c.conn, FLOW_MIB * MIB);
  });
}

const sink = startSink();
const fx = await buildFixture([{ name: "sink", node: "n1", port: sink.port, allow: "group:devs" }]);
const dir = await Deno.makeTempDir({ prefix: "florete-memory-" });
const rows: string[] = [];
try {
  for (const start of FLOOR ? [startAgents, startFloor] : [startAgents]) {
    const pair = await start(fx, sink.port, dir);
    try {
      await runPhases(pair, rows);
    } finally {
      await pair.stop();
    }
  }
  console.log(
    `memory (MB; env ${JSON.stringify(AGENT_ENV)}; user = SOCKS side):\n${rows.join("\n")}`,
  );
} finally {
  await fx.cleanup();
  sink.close();
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}

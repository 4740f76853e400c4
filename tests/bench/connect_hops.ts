/**
 * What each hop of a loopback CONNECT costs in Deno on this machine (issue 10: CONNECT →
 * first echoed byte ≤ 1.2 ms): the pieces the floor (tests/bench/connect_floor.ts) and
 * Florete are made of, measured between two Deno processes in one run, interleaved round by
 * round so load hits every piece alike.
 *
 *   deno run -A tests/bench/connect_hops.ts [--samples N] [--rounds R] [--syscalls]
 *
 * Pieces (medians, ms):
 * - `tcp echo`: 1 byte there and back on an open TCP connection (two TCP one-way hops).
 * - `quic echo`: 1 byte there and back on an open QUIC stream (two QUIC one-way hops).
 * - `quic open`: `createBidirectionalStream()` alone (what a spare stream opened ahead saves).
 * - `quic new stream echo`: a new stream, 1 byte, its echo (the floor's header and reply).
 * - `tcp connect`: `Deno.connect` to a listener in the other process (the node's dial).
 * - `tcp connect+accept echo`: connect, 1 byte, echoed by the process that accepted it.
 * - `floor CONNECT → echo`, `floor, spare stream`: the floor's whole CONNECT, as the bench
 *   client does it, without and with a stream opened ahead (connect_floor.ts FLOOR_SPARE);
 *   `floor, lean`: with fewer operations per CONNECT (FLOOR_LEAN); `floor, agents' V8
 *   flags`: the plain floor run with the agents' V8 flags (lib/memory.ts AGENT_V8_FLAGS);
 *   `floor, BBR`: with the agents' congestion control (FLOOR_BBR); `floor, CONNECTs 5 ms
 *   apart`: the plain floor with an (untimed) pause before each CONNECT.
 * - `… busy after write`: the echo when the writer spends BUSY_MS on other work between its
 *   write and its next await, as an agent does (logging, metrics, relay set-up); `quic
 *   arrival …`: when the far process got the byte (its wall clock), i.e. when the packet left:
 *   Deno sends a QUIC packet only once the writing process's event loop goes idle.
 *   `setImmediate` / `setTimeout 0`: whether yielding that way lets it go (and what it costs).
 *
 * A CONNECT through the floor is at least: client connect and accept, two SOCKS round trips
 * (greeting, request/reply) on TCP, four QUIC one-way hops (header, reply, byte there, byte
 * back), the node's dial, and the target's echo (a TCP round trip): printed as a sum.
 *
 *   connect_hops.ts far CERT KEY   (spawned by the above: prints "QUICPORT TCPPORT")
 */
import { join } from "node:path";
import { throwawayNodeIdentity } from "../lib/node_identity.ts";
import { median, percentile } from "./report.ts";
import { socksConnect } from "../e2e/harness.ts";
import { AGENT_V8_FLAGS_ARG } from "../../lib/memory.ts";
import { setImmediate } from "node:timers";

const ALPN = ["hops"];
/** Each echo reads at most this: every message here is 1 byte. */
const ECHO_READ_BYTES = 1024;

async function far(certFile: string, keyFile: string) {
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  const listener = endpoint.listen({
    cert: Deno.readTextFileSync(certFile),
    key: Deno.readTextFileSync(keyFile),
    alpnProtocols: ALPN,
    // Far above the streams a run opens one after another (each is closed at once).
    maxConcurrentBidirectionalStreams: 10_000,
  });
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log(`${endpoint.addr.port} ${(tcp.addr as Deno.NetAddr).port}`);
  (async () => {
    for await (const c of tcp) {
      c.setNoDelay(true);
      (async () => {
        const b = new Uint8Array(ECHO_READ_BYTES);
        for (;;) {
          const n = await c.read(b);
          if (n === null) break;
          await c.write(b.subarray(0, n));
        }
      })().catch(() => {}).finally(() => c.close());
    }
  })();
  for await (const incoming of listener) {
    Promise.resolve(incoming.accept()).then(async (conn) => {
      let first = true;
      for await (const s of conn.incomingBidirectionalStreams) {
        // The first stream answers each chunk with the wall-clock time it arrived (when did
        // a write leave the near process?); every other stream echoes.
        if (first) stampEach(s).catch(() => {});
        else s.readable.pipeTo(s.writable).catch(() => {});
        first = false;
      }
    }).catch(() => {});
  }
}

const wallNow = () => performance.timeOrigin + performance.now();

async function stampEach(s: Deno.QuicBidirectionalStream) {
  const w = s.writable.getWriter();
  for await (const _ of s.readable) {
    const at = new Float64Array([wallNow()]);
    await w.write(new Uint8Array(at.buffer));
  }
}

async function readOne(r: ReadableStreamDefaultReader<Uint8Array>) {
  const { done } = await r.read();
  if (done) throw new Error("stream ended");
}

async function tcpReadOne(c: Deno.TcpConn) {
  if ((await c.read(new Uint8Array(ECHO_READ_BYTES))) === null) throw new Error("closed");
}

interface Far {
  quic: Deno.QuicConn;
  tcpPort: number;
  /** The floor's SOCKS port (tests/bench/connect_floor.ts, two more processes), and those of
   * a floor with a spare stream opened ahead (FLOOR_SPARE) and a lean one (FLOOR_LEAN). */
  floorPorts: number[];
  /** The plain floor's SOCKS side and node side. */
  floorPids: [number, number];
  stop(): Promise<void>;
}

/** Starts `deno run` on a script and waits for the first line it prints. */
async function spawnPrinting(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ child: Deno.ChildProcess; line: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", ...args],
    env,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let line = "";
  while (!line.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${args.join(" ")} exited before it was ready`);
    line += value;
  }
  reader.releaseLock();
  return { child, line: line.trim() };
}

async function startFar(dir: string): Promise<Far> {
  const id = await throwawayNodeIdentity("floor");
  const [certFile, keyFile, caFile] = ["n.pem", "n.key", "ca.pem"].map((f) => join(dir, f));
  await Deno.writeTextFile(certFile, id.certPem);
  await Deno.writeTextFile(keyFile, id.keyPem);
  await Deno.writeTextFile(caFile, id.caPem);
  const children: Deno.ChildProcess[] = [];
  const farSide = await spawnPrinting([import.meta.filename!, "far", certFile, keyFile]);
  children.push(farSide.child);
  const floorScript = join(import.meta.dirname!, "connect_floor.ts");
  const floors: number[] = [];
  const pids: number[] = [];
  // The last runs with the agents' V8 flags (lib/memory.ts: a 1 MB young generation).
  const variants: Array<[Record<string, string>, string[]]> = [
    [{}, []],
    [{ FLOOR_SPARE: "1" }, []],
    [{ FLOOR_LEAN: "1" }, []],
    [{}, [AGENT_V8_FLAGS_ARG]],
    [{ FLOOR_BBR: "1" }, []],
  ];
  for (const [env, flags] of variants) {
    const node = await spawnPrinting([...flags, floorScript, "node", certFile, keyFile], env);
    children.push(node.child);
    const socks = await spawnPrinting([...flags, floorScript, "socks", node.line, caFile], env);
    children.push(socks.child);
    floors.push(Number(socks.line));
    pids.push(socks.child.pid, node.child.pid);
  }
  const [quicPort, tcpPort] = farSide.line.split(" ").map(Number);
  const quic = await Deno.connectQuic({
    hostname: "127.0.0.1",
    port: quicPort,
    serverName: id.serverName,
    caCerts: [id.caPem],
    alpnProtocols: ALPN,
    keepAliveInterval: 1_000,
  });
  return {
    quic,
    tcpPort,
    floorPorts: floors,
    floorPids: [pids[0], pids[1]],
    async stop() {
      quic.close();
      for (const c of children) {
        c.kill("SIGTERM");
        await c.status;
      }
    },
  };
}

type Piece = () => Promise<number>;

/** Pause before each CONNECT of the spaced floor piece: its teardown is long over by then. */
const APART_MS = 5;

/** Work an agent does between a write and its next await (logging, metrics, relay set-up). */
const BUSY_MS = 0.2;

function busy(ms: number) {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* spin */ }
}

/** One CONNECT → first echoed byte through a floor, as the bench client does it; the target
 * is the far process's TCP echo. */
async function floorConnect(socksPort: number, echoPort: number): Promise<number> {
  const t0 = performance.now();
  const { conn, reply } = await socksConnect(socksPort, "echo.floor", echoPort);
  if (reply !== 0) throw new Error(`floor: SOCKS reply ${reply}`);
  await conn.write(Uint8Array.of(42));
  await tcpReadOne(conn);
  const ms = performance.now() - t0;
  conn.close();
  return ms;
}

/** The pieces, each timing one sample (ms); `open` holds the long-lived connection/stream. */
async function pieces(f: Far): Promise<{ run: Record<string, Piece>; close(): void }> {
  const one = Uint8Array.of(42);
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: f.tcpPort });
  tcp.setNoDelay(true);
  const stamp = await f.quic.createBidirectionalStream();
  const sw = stamp.writable.getWriter();
  const sr = stamp.readable.getReader();
  await sw.write(one); // opens it at the far end first: it is the stamping stream
  await sr.read();
  const s = await f.quic.createBidirectionalStream();
  const w = s.writable.getWriter();
  const r = s.readable.getReader();
  const dial = { hostname: "127.0.0.1", port: f.tcpPort };
  const run: Record<string, Piece> = {
    "tcp echo": async () => {
      const t0 = performance.now();
      await tcp.write(one);
      await tcpReadOne(tcp);
      return performance.now() - t0;
    },
    "quic echo": async () => {
      const t0 = performance.now();
      await w.write(one);
      await readOne(r);
      return performance.now() - t0;
    },
    // Whether a write leaves the process before the code that follows it yields: the echo
    // of a write followed by BUSY_MS of work costs BUSY_MS + the echo if the packet waits.
    "tcp echo, busy after write": async () => {
      const t0 = performance.now();
      await tcp.write(one);
      busy(BUSY_MS);
      await tcpReadOne(tcp);
      return performance.now() - t0;
    },
    "quic echo, busy after write": async () => {
      const t0 = performance.now();
      await w.write(one);
      busy(BUSY_MS);
      await readOne(r);
      return performance.now() - t0;
    },
    // How long after the write the far process got it, with the writer busy meanwhile
    // (stamp − write time: ≈ the busy time if the packet waited for the writer to yield).
    "quic arrival, busy after write": async () => {
      const t0 = wallNow();
      await sw.write(one);
      busy(BUSY_MS);
      const { value } = await sr.read();
      return new Float64Array(value!.slice(0, 8).buffer)[0] - t0;
    },
    "quic arrival, setImmediate, busy": async () => {
      const t0 = wallNow();
      await sw.write(one);
      await new Promise((r) => setImmediate(r));
      busy(BUSY_MS);
      const { value } = await sr.read();
      return new Float64Array(value!.slice(0, 8).buffer)[0] - t0;
    },
    "quic arrival, idle after write": async () => {
      const t0 = wallNow();
      await sw.write(one);
      const { value } = await sr.read();
      return new Float64Array(value!.slice(0, 8).buffer)[0] - t0;
    },
    "quic echo, setTimeout 0, busy": async () => {
      const t0 = performance.now();
      await w.write(one);
      await new Promise((r) => setTimeout(r, 0));
      busy(BUSY_MS);
      await readOne(r);
      return performance.now() - t0;
    },
    "quic echo, setImmediate, busy": async () => {
      const t0 = performance.now();
      await w.write(one);
      await new Promise((r) => setImmediate(r));
      busy(BUSY_MS);
      await readOne(r);
      return performance.now() - t0;
    },
    "quic open": async () => {
      const t0 = performance.now();
      const n = await f.quic.createBidirectionalStream();
      const ms = performance.now() - t0;
      // Unused, it is never seen by the peer; written and closed, it is, and echoed back.
      const nw = n.writable.getWriter();
      await nw.write(one);
      await nw.close();
      await n.readable.pipeTo(new WritableStream());
      return ms;
    },
    "quic new stream echo": async () => {
      const t0 = performance.now();
      const n = await f.quic.createBidirectionalStream();
      const nw = n.writable.getWriter();
      await nw.write(one);
      const nr = n.readable.getReader();
      await readOne(nr);
      const ms = performance.now() - t0;
      await nw.close();
      await nr.read();
      return ms;
    },
    "tcp connect": async () => {
      const t0 = performance.now();
      const c = await Deno.connect(dial);
      const ms = performance.now() - t0;
      c.close();
      return ms;
    },
    "floor CONNECT → echo": () => floorConnect(f.floorPorts[0], f.tcpPort),
    "floor, spare stream": () => floorConnect(f.floorPorts[1], f.tcpPort),
    "floor, lean": () => floorConnect(f.floorPorts[2], f.tcpPort),
    "floor, agents' V8 flags": () => floorConnect(f.floorPorts[3], f.tcpPort),
    "floor, BBR": () => floorConnect(f.floorPorts[4], f.tcpPort),
    // Back to back, a CONNECT overlaps the previous one's teardown; an agent's CONNECTs are
    // mostly apart. The pause is not timed.
    "floor, CONNECTs 5 ms apart": async () => {
      await new Promise((r) => setTimeout(r, APART_MS));
      return await floorConnect(f.floorPorts[0], f.tcpPort);
    },
    "tcp connect+accept echo": async () => {
      const t0 = performance.now();
      const c = await Deno.connect(dial);
      c.setNoDelay(true);
      await c.write(one);
      await tcpReadOne(c);
      const ms = performance.now() - t0;
      c.close();
      return ms;
    },
  };
  return {
    run,
    close() {
      tcp.close();
      w.close().catch(() => {});
    },
  };
}

/** User and system CPU time a process has used so far (/proc/PID/stat), ms. */
async function cpuOf(pid: number): Promise<{ user: number; sys: number }> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(f[11]) * 10, sys: Number(f[12]) * 10 }; // USER_HZ 100
}

export interface HopsReport {
  /** Per piece, every sample, ms. */
  samples: Record<string, number[]>;
  /** The plain floor's CPU per CONNECT, ms, user and system, of each of its processes. */
  floorCpu: { socks: { user: number; sys: number }; node: { user: number; sys: number } };
  /** With `syscalls`: system calls per floor CONNECT (strace -c on both processes, over a
   * batch of their own), by name, most first. */
  syscalls?: Array<[string, number]>;
}

/** Floor CONNECTs counted under strace (which slows them; only the counts are used). */
const STRACE_CONNECTS = 200;

/** Counts the floor's system calls over STRACE_CONNECTS CONNECTs (strace -c -f). */
async function countSyscalls(f: Far, dir: string): Promise<Array<[string, number]>> {
  const out = join(dir, "strace.txt");
  const strace = new Deno.Command("strace", {
    args: ["-c", "-f", "-o", out, ...f.floorPids.flatMap((p) => ["-p", String(p)])],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await new Promise((r) => setTimeout(r, STRACE_ATTACH_MS));
  for (let i = 0; i < STRACE_CONNECTS; i++) await floorConnect(f.floorPorts[0], f.tcpPort);
  strace.kill("SIGINT");
  await strace.status;
  const counts: Array<[string, number]> = [];
  for (const line of (await Deno.readTextFile(out)).split("\n")) {
    // % time  seconds  usecs/call  calls  [errors]  syscall
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
    if (m && m[2] !== "total") counts.push([m[2], Number(m[1]) / STRACE_CONNECTS]);
  }
  return counts.sort((a, b) => b[1] - a[1]);
}

/** strace takes a moment to attach to every thread of both processes. */
const STRACE_ATTACH_MS = 1_000;

const FLOOR = "floor CONNECT → echo";

export async function measureHops(
  samples: number,
  rounds: number,
  syscalls = false,
): Promise<HopsReport> {
  const dir = await Deno.makeTempDir({ prefix: "florete-hops-" });
  const f = await startFar(dir);
  try {
    const p = await pieces(f);
    const out: Record<string, number[]> = {};
    const cpu = [{ user: 0, sys: 0 }, { user: 0, sys: 0 }];
    // Warm-up: V8 tiers the code up (tests/bench/bench_options.ts WARMUP_CONNECTS).
    for (let i = 0; i < 300; i++) for (const piece of Object.values(p.run)) await piece();
    for (let round = 0; round < rounds; round++) {
      for (const [name, piece] of Object.entries(p.run)) {
        out[name] ??= [];
        const before = name === FLOOR ? await Promise.all(f.floorPids.map(cpuOf)) : [];
        for (let i = 0; i < samples; i++) out[name].push(await piece());
        if (name !== FLOOR) continue;
        const after = await Promise.all(f.floorPids.map(cpuOf));
        for (const k of [0, 1]) {
          cpu[k].user += after[k].user - before[k].user;
          cpu[k].sys += after[k].sys - before[k].sys;
        }
      }
    }
    p.close();
    const n = samples * rounds;
    const per = (c: { user: number; sys: number }) => ({ user: c.user / n, sys: c.sys / n });
    const report: HopsReport = {
      samples: out,
      floorCpu: { socks: per(cpu[0]), node: per(cpu[1]) },
    };
    if (syscalls) report.syscalls = await countSyscalls(f, dir);
    return report;
  } finally {
    await f.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

export function formatHops(report: HopsReport): string {
  const h = report.samples;
  const m = (k: string) => median(h[k]);
  const ms = (v: number) => v.toFixed(3).padStart(7);
  const lines = ["piece                        median     p90 ms"];
  for (const [k, v] of Object.entries(h)) {
    lines.push(`${k.padEnd(26)} ${ms(median(v))} ${ms(percentile(v, 0.9))}`);
  }
  const quicHop = m("quic echo") / 2;
  const tcpRtt = m("tcp echo");
  const parts: Array<[string, number]> = [
    ["client connect, accept (+ its first round trip)", m("tcp connect+accept echo")],
    ["second SOCKS round trip (request → reply)", tcpRtt],
    ["header on a new stream, reply back", m("quic new stream echo")],
    ["node dials the target", m("tcp connect")],
    ["first byte: two QUIC one-way hops", 2 * quicHop],
    ["first byte: client → SOCKS side, back", tcpRtt],
    ["first byte: node → target echo → node", tcpRtt],
  ];
  lines.push(
    "",
    `one QUIC one-way hop ${quicHop.toFixed(3)} ms, one TCP one-way hop ${
      (tcpRtt / 2).toFixed(3)
    } ms`,
    "",
    "least a floor CONNECT → first echoed byte can cost, from these pieces:",
  );
  for (const [what, v] of parts) lines.push(`${ms(v)}  ${what}`);
  lines.push(`${ms(parts.reduce((a, [, v]) => a + v, 0))}  sum`);
  const { socks, node } = report.floorCpu;
  lines.push(
    "",
    `floor CPU per CONNECT, ms (user + system): SOCKS side ${ms(socks.user)} +${ms(socks.sys)}, ` +
      `node side ${ms(node.user)} +${ms(node.sys)}`,
  );
  if (report.syscalls) {
    const total = report.syscalls.reduce((a, [, n]) => a + n, 0);
    lines.push(
      "",
      `floor system calls per CONNECT (both processes, strace -c): ${total.toFixed(0)}`,
      ...report.syscalls.slice(0, 12).map(([name, n]) => `${n.toFixed(1).padStart(7)}  ${name}`),
    );
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const [role, a, b] = Deno.args;
  if (role === "far") {
    await far(a, b);
  } else {
    const arg = (name: string, dflt: number) => {
      const i = Deno.args.indexOf(`--${name}`);
      return i >= 0 ? Number(Deno.args[i + 1]) : dflt;
    };
    const syscalls = Deno.args.includes("--syscalls");
    console.log(formatHops(await measureHops(arg("samples", 200), arg("rounds", 3), syscalls)));
  }
}

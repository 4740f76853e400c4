/**
 * The bench's one client: the same code measures every path (direct TCP, `ssh -D`, flor),
 * which differ only in how a connection to the sink or the echo server is opened (plainly,
 * or by SOCKS5 CONNECT to a local proxy). Runs where the user would, in the client's
 * namespace, and prints one JSON ClientResult.
 *
 *   bench_client.ts '<ClientTask as JSON>'
 *
 * The first measurement is one CONNECT → first echoed byte on the proxy as started ("cold":
 * a fresh agent has no QUIC connection yet and runs its code for the first time). Then
 * `warmupConnects` unmeasured CONNECTs (WARMUP_PARALLEL at a time), then `latencyCount`
 * measured ones one by one: the steady state of a proxy that has been running for a while,
 * which is what a user's agent, up for days, shows (a fresh agent's first 200 read 0.3-0.6
 * ms more on loopback while V8 tiers its code up). Then one flow, then N flows at once.
 * Every path (direct TCP, ssh -D, flor) gets the same sequence; the client process warms
 * up with it too.
 */
import { ExactReader, socksConnect } from "../e2e/harness.ts";
import { type Sizes, WARMUP_PARALLEL } from "./bench_options.ts";

export interface Target {
  host: string;
  port: number;
}

export interface ClientTask {
  /** SOCKS5 proxy on 127.0.0.1, or undefined for direct TCP. */
  socksPort?: number;
  /** The sink (counts bytes until EOF, answers the count) and the echo server. */
  sink: Target;
  echo: Target;
  sizes: Sizes;
}

export interface ClientResult {
  coldMs: number;
  latencyMs: number[];
  flow: { bytes: number; seconds: number };
  concurrent: { n: number; completed: number; seconds: number; timedOut: boolean };
}

/** Each write; the sink and the relays read 64-256 KiB at a time. */
const CHUNK = 256 * 1024;

async function open(task: ClientTask, to: Target): Promise<Deno.TcpConn> {
  if (task.socksPort === undefined) return await Deno.connect({ hostname: to.host, port: to.port });
  const s = await socksConnect(task.socksPort, to.host, to.port);
  if (s.reply !== 0) {
    s.conn.close();
    throw new Error(`SOCKS CONNECT ${to.host}:${to.port} via :${task.socksPort}: reply ${s.reply}`);
  }
  return s.conn;
}

async function firstByteMs(task: ClientTask): Promise<number> {
  const t0 = performance.now();
  const c = await open(task, task.echo);
  try {
    await c.write(Uint8Array.of(42));
    await new ExactReader(c).read(1);
    return performance.now() - t0;
  } finally {
    c.close();
  }
}

/** Sends `bytes` (or until `deadline`, ms on performance.now()), then waits for the count. */
async function send(conn: Deno.TcpConn, bytes: number, deadline: number): Promise<number> {
  const chunk = new Uint8Array(CHUNK).fill(0x5a);
  let sent = 0;
  while (sent < bytes && performance.now() < deadline) {
    const n = Math.min(CHUNK, bytes - sent);
    for (let o = 0; o < n;) o += await conn.write(chunk.subarray(o, n));
    sent += n;
  }
  await conn.closeWrite();
  const count = Number(new DataView((await new ExactReader(conn).read(8)).buffer).getBigUint64(0));
  conn.close();
  if (count !== sent) throw new Error(`sink counted ${count} of ${sent} bytes`);
  return sent;
}

async function oneFlow(task: ClientTask): Promise<ClientResult["flow"]> {
  const conn = await open(task, task.sink);
  const t0 = performance.now();
  const bytes = await send(conn, task.sizes.flowBytes, t0 + task.sizes.flowMaxSeconds * 1000);
  return { bytes, seconds: (performance.now() - t0) / 1000 };
}

async function concurrent(task: ClientTask): Promise<ClientResult["concurrent"]> {
  const { concurrent: n, concurrentBytes, concurrentMaxSeconds } = task.sizes;
  const conns: Deno.TcpConn[] = [];
  let completed = 0;
  const t0 = performance.now();
  const all = Promise.all(Array.from({ length: n }, async () => {
    const c = await open(task, task.sink);
    conns.push(c);
    await send(c, concurrentBytes, Infinity);
    completed++;
  }));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => {
    timer = setTimeout(() => r("timeout"), concurrentMaxSeconds * 1000);
  });
  const outcome = await Promise.race([all, timeout]);
  clearTimeout(timer);
  const seconds = (performance.now() - t0) / 1000;
  if (outcome === "timeout") {
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // finished meanwhile
      }
    }
    await all.catch(() => {});
  }
  return { n, completed, seconds, timedOut: outcome === "timeout" };
}

/** `n` CONNECTs → first echoed byte, `WARMUP_PARALLEL` at a time, not measured. */
async function warmUp(task: ClientTask, n: number): Promise<void> {
  let left = n;
  await Promise.all(Array.from({ length: Math.min(WARMUP_PARALLEL, n) }, async () => {
    while (left-- > 0) await firstByteMs(task);
  }));
}

export async function runClient(task: ClientTask): Promise<ClientResult> {
  const coldMs = await firstByteMs(task);
  await warmUp(task, task.sizes.warmupConnects);
  const latencyMs: number[] = [];
  for (let i = 0; i < task.sizes.latencyCount; i++) latencyMs.push(await firstByteMs(task));
  const flow = await oneFlow(task);
  return { coldMs, latencyMs, flow, concurrent: await concurrent(task) };
}

if (import.meta.main) {
  console.log(JSON.stringify(await runClient(JSON.parse(Deno.args[0]) as ClientTask)));
}

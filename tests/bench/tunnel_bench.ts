/**
 * `deno task bench`: throughput and latency of a tunnel against the same sink reached
 * directly, in one run, so the numbers are a ratio on this machine rather than absolutes.
 *
 *   1. one TCP flow of BENCH_BYTES (default 1 GiB): client → user agent → QUIC → node agent
 *      → sink, vs client → sink;
 *   2. SOCKS CONNECT → first echoed byte over a warm tunnel, 200 connections: median, p99.
 *
 * Environment: BENCH_MIB (default 1024), BENCH_CONNECTIONS (default 200).
 */
import { join } from "node:path";
import { agentFlags, buildFixture } from "../e2e/fixture.ts";
import { ExactReader, socksConnect, startFlor } from "../e2e/harness.ts";

const TOTAL = Number(Deno.env.get("BENCH_MIB") ?? 1024) * 1024 * 1024;
const CONNECTIONS = Number(Deno.env.get("BENCH_CONNECTIONS") ?? 200);
const CHUNK = 256 * 1024;

/** Reads everything, then answers with the byte count (8 bytes) and closes. */
function startSink(): { port: number; close(): void } {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const c of l) {
      (async () => {
        const buf = new Uint8Array(CHUNK);
        let n = 0;
        for (;;) {
          const r = await c.read(buf);
          if (r === null) break;
          n += r;
        }
        const out = new Uint8Array(8);
        new DataView(out.buffer).setBigUint64(0, BigInt(n));
        await c.write(out);
        c.close();
      })().catch(() => {});
    }
  })().catch(() => {});
  return { port: (l.addr as Deno.NetAddr).port, close: () => l.close() };
}

async function push(conn: Deno.TcpConn): Promise<number> {
  const chunk = new Uint8Array(CHUNK).fill(0x5a);
  const started = performance.now();
  for (let sent = 0; sent < TOTAL;) {
    const n = Math.min(CHUNK, TOTAL - sent);
    for (let o = 0; o < n;) o += await conn.write(chunk.subarray(o, n));
    sent += n;
  }
  await conn.closeWrite();
  const count = new DataView((await new ExactReader(conn).read(8)).buffer).getBigUint64(0);
  const seconds = (performance.now() - started) / 1000;
  conn.close();
  if (Number(count) !== TOTAL) throw new Error(`sink got ${count} of ${TOTAL} bytes`);
  return TOTAL / seconds / 1e6;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

const sink = startSink();
const fx = await buildFixture([{ name: "sink", node: "n1", port: sink.port, allow: "group:devs" }]);
const agents = [];
try {
  const node = await startFlor(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
  agents.push(node);
  const user = agentFlags();
  agents.push(await startFlor(join(fx.bundles.alice, "flor.yaml"), user.flags));

  console.log(`throughput: one flow of ${TOTAL / 1024 / 1024} MiB`);
  const direct = await push(await Deno.connect({ hostname: "127.0.0.1", port: sink.port }));
  console.log(`  direct TCP to sink:          ${direct.toFixed(0)} MB/s`);
  const c = await socksConnect(user.socks, "sink.flor", sink.port);
  if (c.reply !== 0) throw new Error(`SOCKS reply ${c.reply} for sink.flor`);
  const viaTunnel = await push(c.conn);
  console.log(`  through flor tunnel:         ${viaTunnel.toFixed(0)} MB/s`);
  console.log(`  ratio tunnel/direct:         ${(viaTunnel / direct).toFixed(3)}`);

  console.log(`latency: SOCKS CONNECT → first echoed byte, ${CONNECTIONS} connections (warm)`);
  // one untimed request first, so the QUIC connection to n1 is warm
  (await socksConnect(user.socks, "echo.flor", fx.ports.echo)).conn.close();
  const times: number[] = [];
  for (let i = 0; i < CONNECTIONS; i++) {
    const t0 = performance.now();
    const c = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
    if (c.reply !== 0) throw new Error(`SOCKS reply ${c.reply}`);
    await c.conn.write(Uint8Array.of(42));
    await new ExactReader(c.conn).read(1);
    times.push(performance.now() - t0);
    c.conn.close();
  }
  const directTimes: number[] = [];
  for (let i = 0; i < CONNECTIONS; i++) {
    const t0 = performance.now();
    const c = await Deno.connect({ hostname: "127.0.0.1", port: fx.ports.echo });
    await c.write(Uint8Array.of(42));
    await new ExactReader(c).read(1);
    directTimes.push(performance.now() - t0);
    c.close();
  }
  times.sort((a, b) => a - b);
  directTimes.sort((a, b) => a - b);
  console.log(
    `  through flor tunnel: median ${percentile(times, 0.5).toFixed(2)} ms, p99 ${
      percentile(times, 0.99).toFixed(2)
    } ms`,
  );
  console.log(
    `  direct TCP:          median ${percentile(directTimes, 0.5).toFixed(2)} ms, p99 ${
      percentile(directTimes, 0.99).toFixed(2)
    } ms`,
  );
} finally {
  await Promise.all(agents.map((a) => a.stop()));
  sink.close();
  await fx.cleanup();
}

/**
 * The bench's far end, run in the server's namespace: a sink (reads until EOF, answers the
 * byte count as 8 bytes big-endian, closes) and an echo server, both on 0.0.0.0 so direct
 * TCP reaches them over the link and the proxies reach them on 127.0.0.1.
 *
 *   bench_servers.ts SINK_PORT ECHO_PORT     prints "listening SINK_PORT ECHO_PORT" once both
 *                                            are bound (a port given as 0: the one bound)
 */

import type { Testbed } from "../e2e/netns.ts";

/** Deno starts in ~200 ms here; several at once on a loaded machine take longer. */
const START_TIMEOUT_MS = 20_000;
/** Read size; matches the relays' 256 KiB so the sink is never the one holding back. */
const READ_BYTES = 256 * 1024;

async function sink(c: Deno.TcpConn): Promise<void> {
  const buf = new Uint8Array(READ_BYTES);
  let n = 0;
  for (;;) {
    const r = await c.read(buf);
    if (r === null) break;
    n += r;
  }
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  for (let o = 0; o < out.length;) o += await c.write(out.subarray(o));
  c.close();
}

async function echo(c: Deno.TcpConn): Promise<void> {
  const buf = new Uint8Array(READ_BYTES);
  for (;;) {
    const n = await c.read(buf);
    if (n === null) break;
    for (let o = 0; o < n;) o += await c.write(buf.subarray(o, n));
  }
  c.close();
}

/** Serves on `port` (0: any free one) and returns the port bound. */
function serve(port: number, handle: (c: Deno.TcpConn) => Promise<void>): number {
  const l = Deno.listen({ hostname: "0.0.0.0", port });
  (async () => {
    for await (const c of l) {
      handle(c).catch(() => {
        try {
          c.close();
        } catch {
          // closed already
        }
      });
    }
  })();
  return (l.addr as Deno.NetAddr).port;
}

/** Starts the servers in a testbed's namespace and waits until both are bound. */
export async function spawnBenchServers(
  tb: Testbed,
  ns: string,
  sinkPort: number,
  echoPort: number,
): Promise<void> {
  const child = tb.spawn(ns, [
    Deno.execPath(),
    ...["run", "--allow-net", import.meta.filename!],
    `${sinkPort}`,
    `${echoPort}`,
  ]);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const timer = setTimeout(() => child.kill("SIGKILL"), START_TIMEOUT_MS);
  try {
    let out = "";
    while (!out.includes("listening")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`bench servers exited: ${await new Response(child.stderr).text()}`);
      out += value;
    }
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
}

if (import.meta.main) {
  const sinkPort = serve(Number(Deno.args[0]), sink);
  const echoPort = serve(Number(Deno.args[1]), echo);
  console.log(`listening ${sinkPort} ${echoPort}`);
}

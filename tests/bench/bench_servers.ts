/**
 * The bench's far end, run in the server's namespace: a sink (reads until EOF, answers the
 * byte count as 8 bytes big-endian, closes) and an echo server, both on 0.0.0.0 so direct
 * TCP reaches them over the link and the proxies reach them on 127.0.0.1.
 *
 *   bench_servers.ts SINK_PORT ECHO_PORT     prints "listening" once both are bound
 */

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

function serve(port: number, handle: (c: Deno.TcpConn) => Promise<void>): void {
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
}

if (import.meta.main) {
  serve(Number(Deno.args[0]), sink);
  serve(Number(Deno.args[1]), echo);
  console.log("listening");
}

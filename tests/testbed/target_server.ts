/**
 * The services a node hosts in the testbed, in one process per host: HTTP targets (`/ping`
 * answers at once, `/blob` sends a file whose sha256 the clients check) and TCP echo
 * targets (the long-lived idle connections). Run inside a node's namespace:
 *
 *   deno run --allow-all target_server.ts HOST BLOB http:PORT... echo:PORT...
 *
 * Prints `ready` once every port listens.
 */
const [host, blobFile, ...specs] = Deno.args;
const blob = await Deno.readFile(blobFile);
for (const spec of specs) {
  const [kind, port] = spec.split(":");
  if (kind === "http") {
    Deno.serve({ hostname: host, port: Number(port), onListen() {} }, (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/blob") return new Response(blob);
      if (path === "/ping") return new Response("pong\n");
      return new Response("not found\n", { status: 404 });
    });
  } else if (kind === "echo") {
    const l = Deno.listen({ hostname: host, port: Number(port) });
    (async () => {
      for await (const c of l) echo(c).catch(() => {});
    })();
  } else {
    throw new Error(`target_server: unknown spec ${spec} (http:PORT or echo:PORT)`);
  }
}
console.log("ready");

async function echo(c: Deno.TcpConn) {
  const buf = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await c.read(buf);
      if (n === null) break;
      for (let o = 0; o < n;) o += await c.write(buf.subarray(o, n));
    }
  } finally {
    c.close();
  }
}

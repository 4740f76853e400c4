/**
 * How long resetConnection takes when thousands of tunnels are cut at once (a node dies):
 * opens N TCP connections on 127.0.0.1, then resets the server side of every one in one
 * macrotask and prints the time. Run with --allow-all (/proc readable) and with explicit
 * permissions (Deno 2.9.6 closes /proc/net and /proc/self/fd to them: the libc scan):
 *
 *   deno run --allow-all tests/bench/reset_many.ts 2000
 *   deno run --allow-net --allow-read --allow-ffi tests/bench/reset_many.ts 2000
 */
import { resetConnection } from "../../lib/socket_options.ts";

const n = Number(Deno.args[0] ?? 2000);
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const port = (listener.addr as Deno.NetAddr).port;
const clients: Deno.TcpConn[] = [];
const servers: Deno.TcpConn[] = [];
for (let i = 0; i < n; i++) {
  const accepting = listener.accept();
  clients.push(await Deno.connect({ hostname: "127.0.0.1", port }));
  servers.push(await accepting);
}
const t0 = performance.now();
for (const s of servers) resetConnection(s);
const ms = performance.now() - t0;
for (const s of servers) s.close();
// Every client reads a reset: each reset hit its own connection.
let resets = 0;
await Promise.all(clients.map(async (c) => {
  try {
    await c.read(new Uint8Array(1));
  } catch (e) {
    if (e instanceof Deno.errors.ConnectionReset) resets++;
  }
  c.close();
}));
listener.close();
console.log(JSON.stringify({ connections: n, reset_ms: Math.round(ms), resets }));

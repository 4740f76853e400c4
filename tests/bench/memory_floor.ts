/**
 * The floor under an agent's memory: the same two hops as Florete (a SOCKS5 front process, one
 * QUIC connection, a node process that dials the target) with the least a Deno relay can hold:
 * per tunnel direction one reused read buffer, no pool, no policy, no logs, no metrics.
 * tests/bench/agent_memory.ts runs it through the same phases as the agents, in the same run:
 * what the floor holds is Deno's own (V8, its runtime, quinn), what the agents hold above it
 * is Florete's. Unlike tests/bench/connect_floor.ts (CONNECT latency), nothing here allocates
 * per chunk: a QUIC write is done with its bytes once it resolves (quinn copied them,
 * lib/buffer_pool.ts), and BYOB reads hand their buffer back.
 *
 *   memory_floor.ts node CERT KEY              prints the UDP port, serves streams
 *   memory_floor.ts socks PORT CA SERVER_NAME  prints the SOCKS port, one QUIC connection
 *
 * A stream's header is the target's TCP port as 2 bytes; the node answers 1 byte (0 = ok).
 * FLOR_MEMORY_SAMPLE works as in the agents (agent/memory_sampler.ts).
 */
import { startMemorySampler } from "../../agent/memory_sampler.ts";

/** Each direction's one buffer: Florete's reads with 200 busy tunnels (lib/relay.ts
 * READ_BUDGET_BYTES / 200 directions, rounded down to a power of two). */
const READ_BYTES = 64 * 1024;

async function writeAll(w: { write(b: Uint8Array): Promise<number> }, b: Uint8Array) {
  for (let o = 0; o < b.length;) o += await w.write(b.subarray(o));
}

async function readN(conn: Deno.TcpConn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  for (let got = 0; got < n;) {
    const r = await conn.read(out.subarray(got));
    if (r === null) throw new Error("closed");
    got += r;
  }
  return out;
}

/** Both directions, each with one reused buffer; ends when both ends are done. */
async function pump(tcp: Deno.TcpConn, s: Deno.QuicBidirectionalStream, first?: Uint8Array) {
  const w = s.writable.getWriter();
  const r = s.readable.getReader({ mode: "byob" });
  const up = (async () => {
    const buf = new Uint8Array(READ_BYTES);
    for (;;) {
      const n = await tcp.read(buf);
      if (n === null) break;
      await w.write(buf.subarray(0, n));
    }
    await w.close();
  })();
  const down = (async () => {
    if (first?.length) await writeAll(tcp, first);
    let buf = new Uint8Array(READ_BYTES);
    for (;;) {
      const { value, done } = await r.read(buf);
      if (done || !value) break;
      await writeAll(tcp, value);
      buf = new Uint8Array(value.buffer);
    }
    await tcp.closeWrite();
  })();
  await Promise.allSettled([up, down]);
  r.cancel().catch(() => {});
  w.abort().catch(() => {});
  try {
    tcp.close();
  } catch { /* closed */ }
}

async function node(certFile: string, keyFile: string) {
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  const listener = endpoint.listen({
    cert: Deno.readTextFileSync(certFile),
    key: Deno.readTextFileSync(keyFile),
    alpnProtocols: ["floor"],
    maxConcurrentBidirectionalStreams: 10_000,
  });
  console.log(endpoint.addr.port);
  for await (const incoming of listener) {
    Promise.resolve(incoming.accept()).then(async (conn) => {
      for await (const s of conn.incomingBidirectionalStreams) serveStream(s).catch(() => {});
    }).catch(() => {});
  }
}

async function serveStream(s: Deno.QuicBidirectionalStream) {
  const r = s.readable.getReader({ mode: "byob" });
  const head = new Uint8Array(2);
  for (let got = 0; got < 2;) {
    const { value, done } = await r.read(new Uint8Array(2 - got));
    if (done || !value) return;
    head.set(value, got);
    got += value.length;
  }
  r.releaseLock();
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: (head[0] << 8) | head[1] });
  tcp.setNoDelay(true);
  const w = s.writable.getWriter();
  await w.write(Uint8Array.of(0));
  w.releaseLock();
  await pump(tcp, s);
}

async function socks(nodePort: number, caFile: string, serverName: string) {
  const conn = await Deno.connectQuic({
    hostname: "127.0.0.1",
    port: nodePort,
    serverName,
    caCerts: [Deno.readTextFileSync(caFile)],
    alpnProtocols: ["floor"],
    keepAliveInterval: 1_000,
  });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log((listener.addr as Deno.NetAddr).port);
  for await (const tcp of listener) {
    serveSocks(conn, tcp).catch(() => {
      try {
        tcp.close();
      } catch { /* closed */ }
    });
  }
}

async function serveSocks(quic: Deno.QuicConn, tcp: Deno.TcpConn) {
  tcp.setNoDelay(true);
  const hello = await readN(tcp, 2);
  await readN(tcp, hello[1]);
  await writeAll(tcp, Uint8Array.of(5, 0));
  const head = await readN(tcp, 5); // VER CMD RSV ATYP=3 LEN
  const rest = await readN(tcp, head[4] + 2);
  const s = await quic.createBidirectionalStream();
  const w = s.writable.getWriter();
  await w.write(Uint8Array.from(rest.subarray(head[4])));
  w.releaseLock();
  const r = s.readable.getReader({ mode: "byob" });
  const { value } = await r.read(new Uint8Array(1));
  r.releaseLock();
  if (value?.[0] !== 0) throw new Error("node refused");
  await writeAll(tcp, Uint8Array.of(5, 0, 0, 1, 0, 0, 0, 0, 0, 0));
  await pump(tcp, s);
}

if (import.meta.main) {
  startMemorySampler();
  const [role, a, b, c] = Deno.args;
  if (role === "node") await node(a, b);
  else if (role === "socks") await socks(Number(a), b, c);
  else throw new Error("usage: memory_floor.ts node CERT KEY | socks PORT CA SERVER_NAME");
}

/**
 * The floor under Florete's CONNECT → first byte on this machine: the same two hops (a SOCKS5
 * front process, one QUIC connection, a node process that dials the target) in the fewest
 * Deno operations: no policy, no auth message, no logging, no streams beyond the QUIC
 * stream itself, plain read/write loops. What Florete costs above this is its own; what this
 * costs is Deno's (sockets, QUIC, two processes). tests/bench/connect_phases.ts runs it
 * side by side with the agents.
 *
 *   connect_floor.ts node CERT KEY      prints the UDP port, serves streams
 *   connect_floor.ts socks PORT CA      prints the SOCKS port, one QUIC connection to PORT
 *
 * A stream's header is the target's TCP port as 2 bytes; the node answers 1 byte (0 = ok).
 * With FLOOR_SPARE=1 (both processes), the header is a 0 byte and the port: the SOCKS side
 * keeps one stream opened ahead with its 0 byte sent, so the node has accepted it and waits
 * on its read before the CONNECT comes (tests/bench/connect_hops.ts compares both).
 * With FLOOR_LEAN=1, fewer operations per CONNECT: the SOCKS messages in one read each, and
 * the stream's reader and writer kept for the pump instead of released and taken again.
 * With FLOOR_BBR=1, both ends use BBR (Deno's "low-latency"), as the agents do by default.
 */
import { nodeServerName } from "../../lib/identity.ts";

/** The name in the node certificate connect_phases.ts issues (cluster floor, node n1). */
const SERVER_NAME = nodeServerName("floor", "n1");
const SPARE = Deno.env.get("FLOOR_SPARE") === "1";
const LEAN = Deno.env.get("FLOOR_LEAN") === "1";
/** Deno's default is Cubic; the agents default to BBR (lib/congestion.ts). */
const CONGESTION = Deno.env.get("FLOOR_BBR") === "1"
  ? { congestionControl: "low-latency" as const }
  : {};
/** One read takes a whole SOCKS greeting or request (at most 257 + 7 bytes). */
const SOCKS_READ_BYTES = 512;
/** Bytes of a stream's header: the spare's marker byte, then the port. */
const HEADER_BYTES = SPARE ? 3 : 2;
/** Same as the agents' relay reads at rest (lib/relay.ts READ_MIN_BYTES). */
const READ_BYTES = 16 * 1024;

async function writeAll(w: { write(b: Uint8Array): Promise<number> }, b: Uint8Array) {
  for (let o = 0; o < b.length;) o += await w.write(b.subarray(o));
}

/** Exactly n bytes from a TCP connection (SOCKS messages are tiny and arrive whole). */
async function readN(conn: Deno.TcpConn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  for (let got = 0; got < n;) {
    const r = await conn.read(out.subarray(got));
    if (r === null) throw new Error("closed");
    got += r;
  }
  return out;
}

/** Both directions with plain loops; ends when either side ends. */
async function pump(
  tcp: Deno.TcpConn,
  s: Deno.QuicBidirectionalStream,
  first?: Uint8Array,
  held?: Held,
) {
  const w = held?.w ?? s.writable.getWriter();
  const r = held?.r ?? s.readable.getReader();
  const up = (async () => {
    const buf = new Uint8Array(READ_BYTES);
    for (;;) {
      const n = await tcp.read(buf);
      if (n === null) break;
      await w.write(buf.slice(0, n));
    }
    await w.close();
  })();
  const down = (async () => {
    if (first?.length) await writeAll(tcp, first);
    for (;;) {
      const { value, done } = await r.read();
      if (done) break;
      await writeAll(tcp, value);
    }
    await tcp.closeWrite();
  })();
  await Promise.allSettled([up, down]);
  // A direction that failed (the client closed first) leaves its half of the stream open;
  // ending both halves gives the stream's credit back to the connection.
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
    // Far above the streams a run holds open at once (50 in the bulk rounds): a stream whose
    // credit comes back late must never make a CONNECT wait.
    maxConcurrentBidirectionalStreams: 10_000,
    ...CONGESTION,
  });
  console.log(endpoint.addr.port);
  for await (const incoming of listener) {
    Promise.resolve(incoming.accept()).then(async (conn) => {
      for await (const s of conn.incomingBidirectionalStreams) serveStream(s).catch(() => {});
    }).catch(() => {});
  }
}

async function serveStream(s: Deno.QuicBidirectionalStream) {
  const r = s.readable.getReader();
  let head = new Uint8Array(0);
  while (head.length < HEADER_BYTES) {
    const { value, done } = await r.read();
    if (done) return;
    const b = new Uint8Array(head.length + value.length);
    b.set(head);
    b.set(value, head.length);
    head = b;
  }
  if (!LEAN) r.releaseLock();
  const at = HEADER_BYTES - 2;
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: (head[at] << 8) | head[at + 1] });
  tcp.setNoDelay(true);
  const w = s.writable.getWriter();
  await w.write(Uint8Array.of(0));
  if (!LEAN) w.releaseLock();
  await pump(tcp, s, head.subarray(HEADER_BYTES), LEAN ? { w, r } : undefined);
}

async function socks(nodePort: number, caFile: string) {
  const conn = await Deno.connectQuic({
    hostname: "127.0.0.1",
    port: nodePort,
    serverName: SERVER_NAME,
    caCerts: [Deno.readTextFileSync(caFile)],
    alpnProtocols: ["floor"],
    // The floor idles while the other paths are measured: without keep-alives the
    // connection timed out between rounds and every later CONNECT hung.
    keepAliveInterval: 1_000,
    ...CONGESTION,
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

interface Held {
  w: WritableStreamDefaultWriter<Uint8Array>;
  r: ReadableStreamDefaultReader<Uint8Array>;
}

interface Opened {
  s: Deno.QuicBidirectionalStream;
  w: WritableStreamDefaultWriter<Uint8Array>;
}

/** The next stream, opened (and with FLOOR_SPARE its marker sent) before it is needed. */
let spare: Promise<Opened> | undefined;

async function openStream(quic: Deno.QuicConn): Promise<Opened> {
  const s = await quic.createBidirectionalStream();
  const w = s.writable.getWriter();
  if (SPARE) await w.write(Uint8Array.of(0));
  return { s, w };
}

/** The destination port of a SOCKS5 CONNECT by name, after the greeting is answered. */
async function socksPort(tcp: Deno.TcpConn): Promise<Uint8Array> {
  if (LEAN) {
    const b = new Uint8Array(SOCKS_READ_BYTES);
    if ((await tcp.read(b)) === null) throw new Error("closed");
    await writeAll(tcp, Uint8Array.of(5, 0));
    const n = await tcp.read(b);
    if (n === null) throw new Error("closed");
    return b.slice(n - 2, n); // VER CMD RSV ATYP=3 LEN NAME PORT
  }
  const hello = await readN(tcp, 2);
  await readN(tcp, hello[1]);
  await writeAll(tcp, Uint8Array.of(5, 0));
  const head = await readN(tcp, 5); // VER CMD RSV ATYP=3 LEN
  const rest = await readN(tcp, head[4] + 2);
  return rest.subarray(head[4]);
}

async function serveSocks(quic: Deno.QuicConn, tcp: Deno.TcpConn) {
  tcp.setNoDelay(true);
  const port = await socksPort(tcp);
  // Spares are used in the order they were opened (QUIC opens lower stream ids implicitly).
  const { s, w } = await (SPARE ? spare ??= openStream(quic) : openStream(quic));
  if (SPARE) spare = openStream(quic);
  await w.write(Uint8Array.from(port));
  if (!LEAN) w.releaseLock();
  const r = s.readable.getReader();
  const { value } = await r.read();
  if (!LEAN) r.releaseLock();
  await writeAll(tcp, Uint8Array.of(5, 0, 0, 1, 0, 0, 0, 0, 0, 0));
  await pump(tcp, s, value?.subarray(1), LEAN ? { w, r } : undefined);
}

if (import.meta.main) {
  const [role, a, b] = Deno.args;
  if (role === "node") await node(a, b);
  else if (role === "socks") await socks(Number(a), b);
  else throw new Error("usage: connect_floor.ts node CERT KEY | socks PORT CA");
}

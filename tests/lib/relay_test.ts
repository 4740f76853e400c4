/**
 * The relay with a real TCP connection on 127.0.0.1 on one side and an in-memory stream in
 * place of the QUIC stream on the other.
 */
import assert from "node:assert/strict";
import { concat } from "./bytes.ts";
import {
  busyReadDirections,
  type Duplex,
  nextReadSize,
  READ_BUDGET_BYTES,
  READ_MAX_BYTES,
  READ_MIN_BYTES,
  readCeiling,
  relay,
  tcpDuplex,
} from "../../lib/relay.ts";
import { relayBuffers } from "../../lib/buffer_pool.ts";
import { randomBytes, readToEnd } from "../e2e/harness.ts";

/** A connected pair: `client` is the application's end, `server` the agent's. */
async function tcpPair(): Promise<{ client: Deno.TcpConn; server: Deno.TcpConn }> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: (l.addr as Deno.NetAddr).port }),
    l.accept(),
  ]);
  l.close();
  return { client, server };
}

/** The QUIC stream's stand-in: a byte stream (like Deno's) the test feeds, and a sink that
 * keeps what it is given until `paused` is cleared. */
function memoryStream(o: { bytes?: boolean } = {}) {
  let ctl!: ReadableStreamDefaultController<Uint8Array> | ReadableByteStreamController;
  const readable = o.bytes === false
    ? new ReadableStream<Uint8Array>({ start: (c) => void (ctl = c) })
    : new ReadableStream({ type: "bytes", start: (c) => void (ctl = c) });
  const received: Uint8Array[] = [];
  let closed = false;
  let aborted: unknown;
  let resume: (() => void) | undefined;
  let paused: Promise<void> | undefined;
  const writable = new WritableStream<Uint8Array>({
    async write(chunk) {
      if (paused) await paused;
      received.push(chunk.slice());
    },
    close() {
      closed = true;
    },
    abort(e) {
      aborted = e ?? "aborted";
    },
  });
  const duplex: Duplex = { readable: readable as ReadableStream<Uint8Array>, writable };
  return {
    duplex,
    push: (b: Uint8Array) => ctl.enqueue(b),
    end() {
      ctl.close();
      // A byte source answers a pending BYOB read with 0 bytes once closed (as Deno's do).
      if ("byobRequest" in ctl) ctl.byobRequest?.respond(0);
    },
    error: (e: unknown) => ctl.error(e),
    received: () => concat(...received),
    closed: () => closed,
    aborted: () => aborted,
    pause() {
      paused = new Promise((r) => (resume = r));
    },
    resume() {
      paused = undefined;
      resume?.();
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, ms = 5_000) {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

Deno.test("relay: next read size doubles when full, halves when mostly empty, within bounds", () => {
  assert.equal(nextReadSize(READ_MIN_BYTES, READ_MIN_BYTES), 2 * READ_MIN_BYTES);
  assert.equal(nextReadSize(READ_MAX_BYTES, READ_MAX_BYTES), READ_MAX_BYTES);
  assert.equal(nextReadSize(READ_MAX_BYTES, 1), READ_MAX_BYTES / 2);
  assert.equal(nextReadSize(READ_MIN_BYTES, 1), READ_MIN_BYTES);
  assert.equal(nextReadSize(64 * 1024, 40 * 1024), 64 * 1024, "a half-full read keeps the size");
  let size = READ_MIN_BYTES;
  for (let i = 0; i < 6; i++) size = nextReadSize(size, size);
  assert.equal(size, READ_MAX_BYTES, "a bulk flow reaches the largest read in six reads");
});

Deno.test("relay: the agent's read budget shrinks the largest read as more flows are busy", () => {
  assert.equal(readCeiling(1), READ_MAX_BYTES, "one flow reads at full size");
  assert.equal(readCeiling(64), READ_MAX_BYTES, "64 × 256 KiB is the budget");
  assert.equal(readCeiling(65), 128 * 1024);
  assert.equal(readCeiling(200), 64 * 1024, "200 busy: 64 KiB (12.5 MiB in all)");
  assert.equal(readCeiling(1_000_000), READ_MIN_BYTES, "never below the smallest read");
  assert.equal(readCeiling(0), READ_MAX_BYTES);
  assert.equal(READ_BUDGET_BYTES / readCeiling(200) >= 200, true);
  assert.equal(nextReadSize(64 * 1024, 64 * 1024, 64 * 1024), 64 * 1024, "full, at the ceiling");
  assert.equal(nextReadSize(READ_MAX_BYTES, 100_000, 64 * 1024), 64 * 1024, "over it: down");
  assert.equal(nextReadSize(READ_MIN_BYTES, 1, 1), READ_MIN_BYTES);
});

Deno.test("relay: bytes cross both ways intact, with EOF carried each way", async () => {
  const { client, server } = await tcpPair();
  const mem = memoryStream();
  const up = randomBytes(3 * 1024 * 1024 + 17);
  const down = randomBytes(2 * 1024 * 1024 + 5);
  const done = relay(tcpDuplex(server), mem.duplex);
  const writing = (async () => {
    for (let o = 0; o < up.length;) o += await client.write(up.subarray(o, o + 100_000));
    await client.closeWrite();
  })();
  for (let o = 0; o < down.length; o += 1000) mem.push(down.slice(o, o + 1000));
  mem.end();
  const got = await readToEnd(client);
  await writing;
  const r = await done;
  client.close();
  assert.equal(r.error, undefined);
  assert.deepEqual(got, down);
  assert.deepEqual(mem.received(), up);
  assert.equal(r.sent, up.length);
  assert.equal(r.received, down.length);
  assert.ok(mem.closed(), "the client's EOF became the stream's FIN");
});

Deno.test("relay: read buffers are reused, not allocated per read, and bytes stay intact", async () => {
  const { client, server } = await tcpPair();
  const mem = memoryStream();
  const before = { ...relayBuffers.stats };
  const up = randomBytes(8 * 1024 * 1024);
  const down = randomBytes(8 * 1024 * 1024);
  const tcp = tcpDuplex(server);
  let reads = 0;
  const done = relay(tcp, mem.duplex, { onBytes: () => reads++ });
  const writing = (async () => {
    for (let o = 0; o < up.length;) o += await client.write(up.subarray(o, o + 100_000));
    await client.closeWrite();
  })();
  for (let o = 0; o < down.length; o += 64 * 1024) mem.push(down.slice(o, o + 64 * 1024));
  mem.end();
  const got = await readToEnd(client);
  await writing;
  assert.equal((await done).error, undefined);
  client.close();
  assert.deepEqual(got, down);
  assert.deepEqual(mem.received(), up);
  const allocated = relayBuffers.stats.allocated - before.allocated;
  const reused = relayBuffers.stats.reused - before.reused;
  // Each direction allocates a buffer per size it grows through (4 KiB ... 256 KiB: 7), the
  // receive path a second one to read into while the first is written; every other read
  // reuses one. 16 MiB in reads of at most 256 KiB is at least 64 reads.
  assert.ok(reads >= 64, `${reads} reads`);
  assert.ok(allocated <= 3 * 7, `${allocated} buffers allocated for ${reads} reads`);
  assert.ok(reused >= reads - allocated - 2, `${reused} reused, ${allocated} allocated`);
  assert.equal(busyReadDirections(), 0, "both directions left the read budget at the end");
});

Deno.test("relay: a half-closed TCP side keeps receiving until the stream ends", async () => {
  const { client, server } = await tcpPair();
  const mem = memoryStream();
  const done = relay(tcpDuplex(server), mem.duplex);
  await client.write(new TextEncoder().encode("request"));
  await client.closeWrite();
  await until(() => mem.closed(), "the FIN on the stream");
  // The response comes after the request's EOF, and reaches the client.
  mem.push(new TextEncoder().encode("response"));
  mem.end();
  assert.equal(new TextDecoder().decode(await readToEnd(client)), "response");
  assert.equal((await done).error, undefined);
  client.close();
});

Deno.test("relay: small chunks the stream has buffered go out in few TCP writes", async () => {
  const { client, server } = await tcpPair();
  const mem = memoryStream();
  const tcp = tcpDuplex(server);
  let writes = 0;
  const done = relay(tcp, mem.duplex, { onBytes: (d) => d === "received" && writes++ });
  // 256 paced QUIC frames of 1 KiB, all waiting when the relay reads.
  for (let i = 0; i < 256; i++) mem.push(new Uint8Array(1024).fill(i));
  mem.end();
  await client.closeWrite();
  const got = await readToEnd(client);
  await done;
  client.close();
  assert.equal(got.length, 256 * 1024);
  assert.equal(got[255 * 1024], 255);
  // Reads of 4, 8, 16, 32, 64, 128 KiB, then the rest: a handful of writes, not 256.
  assert.ok(writes <= 8, `${writes} TCP writes for 256 chunks`);
});

Deno.test("relay: a plain (non-byte) stream is relayed chunk by chunk", async () => {
  const { client, server } = await tcpPair();
  const mem = memoryStream({ bytes: false });
  const done = relay(tcpDuplex(server), mem.duplex);
  for (let i = 0; i < 10; i++) mem.push(Uint8Array.of(i));
  mem.end();
  await client.closeWrite();
  assert.deepEqual([...await readToEnd(client)], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal((await done).error, undefined);
  client.close();
});

Deno.test("relay: a stream that stops taking data stops the TCP reads", async () => {
  const { client, server } = await tcpPair();
  const mem = memoryStream();
  mem.pause();
  const tcp = tcpDuplex(server);
  const done = relay(tcp, mem.duplex);
  const total = 64 * 1024 * 1024;
  let written = 0;
  const writing = (async () => {
    const chunk = new Uint8Array(256 * 1024);
    while (written < total) written += await client.write(chunk.subarray(0, total - written));
    await client.closeWrite();
  })();
  await sleep(500);
  // What the relay took off the socket is one read in the sink and one in hand; the rest
  // waits in kernel buffers and the writer is blocked well short of the total.
  assert.ok(tcp.bytes.read <= 3 * READ_MAX_BYTES, `relay read ${tcp.bytes.read} bytes`);
  assert.ok(written < total / 2, `writer got ${written} bytes out`);
  mem.resume();
  await writing;
  mem.end();
  await done;
  client.close();
  assert.equal(mem.received().length, total);
});

Deno.test("relay: an abort ends both directions and closes the TCP connection", async () => {
  const { client, server } = await tcpPair();
  const mem = memoryStream();
  const stop = new AbortController();
  const done = relay(tcpDuplex(server), mem.duplex, { signal: stop.signal });
  mem.push(Uint8Array.of(1, 2, 3));
  const first = new Uint8Array(3);
  assert.equal(await client.read(first), 3);
  stop.abort(new Error("revoked"));
  const r = await done;
  assert.match(String(r.error), /revoked/);
  assert.equal(busyReadDirections(), 0, "an aborted relay left the read budget");
  assert.ok(mem.aborted(), "the stream's writable was reset");
  // The agent closed its end: the client sees EOF or a reset, not more data.
  const rest = await client.read(new Uint8Array(10)).catch(() => null);
  assert.equal(rest, null);
  client.close();
});

Deno.test("relay: an error on the stream ends the relay with it and closes TCP", async () => {
  const { client, server } = await tcpPair();
  const mem = memoryStream();
  const done = relay(tcpDuplex(server), mem.duplex);
  mem.error(new Error("stream reset by peer"));
  const r = await done;
  assert.match(String(r.error), /stream reset by peer/);
  assert.equal(await client.read(new Uint8Array(10)).catch(() => null), null);
  client.close();
});

Deno.test("relay: an abort ends a relay whose TCP peer stopped reading", async () => {
  const { client, server } = await tcpPair();
  const mem = memoryStream();
  const stop = new AbortController();
  const done = relay(tcpDuplex(server), mem.duplex, { signal: stop.signal });
  // Far more than the kernel buffers hold: the relay's TCP write blocks.
  for (let i = 0; i < 64; i++) mem.push(new Uint8Array(1024 * 1024));
  await sleep(300);
  stop.abort(new Error("revoked"));
  const r = await Promise.race([done, sleep(5_000).then(() => "hung")]);
  assert.notEqual(r, "hung", "the relay did not end");
  assert.match(String((r as { error: unknown }).error), /revoked/);
  assert.equal(busyReadDirections(), 0, "a relay aborted mid-write left the read budget");
  client.close();
});

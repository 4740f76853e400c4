/**
 * The relays' buffer pool, and the two facts about Deno 2.9.6 its safety rests on: a QUIC
 * stream write and a TCP write are done with their buffer once they resolve (checked with real
 * sockets: each buffer is overwritten right after its write resolved, before the peer reads
 * anything, and the peer must still get the original bytes).
 */
import assert from "node:assert/strict";
import { quinnPair } from "./quic_pair.ts";
import { BufferPool } from "../../lib/buffer_pool.ts";
import { readToEnd } from "../e2e/harness.ts";

Deno.test("buffer_pool: a given-back buffer is handed out again for the same size only", () => {
  const pool = new BufferPool(1024 * 1024);
  const a = pool.take(4096);
  a[0] = 7;
  pool.give(a.subarray(0, 10)); // a read's subarray gives back the whole buffer
  assert.equal(pool.stats.idleBytes, 4096);
  const other = pool.take(8192);
  assert.notEqual(other.buffer, a.buffer);
  const again = pool.take(4096);
  assert.equal(again.buffer, a.buffer);
  assert.equal(again.length, 4096);
  assert.deepEqual(pool.stats, { reused: 1, allocated: 2, dropped: 0, idleBytes: 0 });
});

Deno.test("buffer_pool: past the idle budget a given-back buffer is dropped", () => {
  const pool = new BufferPool(3 * 4096);
  const bufs = Array.from({ length: 4 }, () => pool.take(4096));
  for (const b of bufs) pool.give(b);
  assert.equal(pool.stats.idleBytes, 3 * 4096);
  assert.equal(pool.stats.dropped, 1);
  pool.clear();
  assert.equal(pool.stats.idleBytes, 0);
  assert.notEqual(pool.take(4096).buffer, bufs[0].buffer);
});

Deno.test("buffer_pool: over the budget, buffers of other sizes make room for the newest", () => {
  const pool = new BufferPool(4 * 4096);
  const small = Array.from({ length: 4 }, () => pool.take(4096));
  for (const b of small) pool.give(b);
  const big = pool.take(8192);
  pool.give(big);
  // The two oldest 4 KiB buffers went; the 8 KiB one a flow now reads with is kept.
  assert.equal(pool.stats.idleBytes, 4 * 4096);
  assert.equal(pool.stats.dropped, 2);
  assert.equal(pool.take(8192).buffer, big.buffer);
  assert.equal(pool.take(4096).buffer, small[3].buffer);
  assert.equal(pool.take(4096).buffer, small[2].buffer);
  assert.notEqual(pool.take(4096).buffer, small[1].buffer);
});

Deno.test("buffer_pool: a read never gets a larger idle buffer (the read budget counts sizes)", () => {
  const pool = new BufferPool();
  const big = pool.take(64 * 1024);
  pool.give(big);
  for (const size of [4096, 16 * 1024, 32 * 1024]) {
    const b = pool.take(size);
    assert.notEqual(b.buffer, big.buffer, `a ${size}-byte read pinned a 64 KiB buffer`);
    assert.equal(b.buffer.byteLength, size);
  }
  assert.equal(pool.take(64 * 1024).buffer, big.buffer);
});

Deno.test("buffer_pool: a dropped buffer is freed at once, not left to the collector", () => {
  const pool = new BufferPool(2 * 4096);
  const bufs = Array.from({ length: 3 }, () => pool.take(4096));
  const buffers = bufs.map((b) => b.buffer);
  for (const b of bufs) pool.give(b);
  assert.equal(pool.stats.dropped, 1);
  // Detached: V8 released its memory (a dropped buffer is one nothing reads any more).
  assert.equal(buffers[2].byteLength, 0, "the given-back buffer past the budget");
  assert.equal(buffers[0].byteLength, 4096, "kept");
  // Evicted for a buffer of another size: freed too.
  pool.give(pool.take(8192));
  assert.equal(buffers[0].byteLength, 0);
  assert.equal(buffers[1].byteLength, 0);
  // Too large for the pool at all.
  const huge = new BufferPool(4096).take(8192);
  const pool2 = new BufferPool(4096);
  pool2.give(huge);
  assert.equal(huge.buffer.byteLength, 0);
});

Deno.test("buffer_pool: clear frees the idle buffers", () => {
  const pool = new BufferPool();
  const a = pool.take(4096);
  pool.give(a);
  pool.clear();
  assert.equal(a.buffer.byteLength, 0);
  assert.equal(pool.stats.idleBytes, 0);
});

Deno.test("buffer_pool: freeing a dropped buffer releases its memory (V8 on Deno 2.9.6)", () => {
  // What #drop relies on: transfer(0) frees the backing store then, not at the next full GC.
  const external = () => Deno.memoryUsage().external;
  const pool = new BufferPool(0);
  const bufs = Array.from({ length: 64 }, () => pool.take(256 * 1024));
  const before = external();
  for (const b of bufs) pool.give(b);
  const freed = before - external();
  assert.ok(freed >= 60 * 256 * 1024, `only ${freed} bytes freed of ${64 * 256 * 1024}`);
});

Deno.test("buffer_pool: a buffer given back twice is refused (two reads would share it)", () => {
  const pool = new BufferPool();
  const a = pool.take(4096);
  pool.give(a);
  assert.throws(() => pool.give(a), /given back twice/);
});

Deno.test("buffer_pool: a detached buffer (a BYOB read took it) is not kept", () => {
  const pool = new BufferPool();
  const a = pool.take(4096);
  (a.buffer as ArrayBuffer).transfer();
  pool.give(a);
  assert.equal(pool.stats.idleBytes, 0);
});

const BLOCK = 64 * 1024;
/** 512 KiB: under quinn's 1.25 MB stream window and loopback's socket buffers, so every write
 * resolves while the peer has read nothing yet. */
const BLOCKS = 8;

/** Writes BLOCKS blocks from ONE buffer, filled with the block's number before its write and
 * overwritten with 0xff as soon as the write resolved; then lets the peer read. */
async function writeReusingOneBuffer(write: (b: Uint8Array) => Promise<void>) {
  const buf = new Uint8Array(BLOCK);
  for (let i = 0; i < BLOCKS; i++) {
    buf.fill(i);
    await write(buf);
    buf.fill(0xff);
  }
}

function assertBlocks(got: Uint8Array) {
  assert.equal(got.length, BLOCK * BLOCKS);
  for (let i = 0; i < BLOCKS; i++) {
    const block = got.subarray(i * BLOCK, (i + 1) * BLOCK);
    assert.ok(block.every((x) => x === i), `block ${i} holds bytes written after its write`);
  }
}

Deno.test("buffer_pool: a QUIC stream write is done with its buffer once it resolves", async () => {
  const { endpoint, client, server } = await quinnPair();
  try {
    const out = await client.createBidirectionalStream();
    const w = out.writable.getWriter();
    // The server does not read until every write resolved.
    await writeReusingOneBuffer((b) => w.write(b));
    await w.close();
    const incoming = server.incomingBidirectionalStreams.getReader();
    const { value: s } = await incoming.read();
    incoming.releaseLock();
    const parts: Uint8Array[] = [];
    for await (const c of s!.readable) parts.push(c);
    const got = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let o = 0;
    for (const p of parts) o += (got.set(p, o), p.length);
    assertBlocks(got);
  } finally {
    client.close();
    server.close();
    endpoint.close();
  }
});

Deno.test("buffer_pool: a TCP write is done with its buffer once it resolves", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: (l.addr as Deno.NetAddr).port }),
    l.accept(),
  ]);
  l.close();
  try {
    await writeReusingOneBuffer(async (b) => {
      for (let o = 0; o < b.length;) o += await client.write(b.subarray(o));
    });
    await client.closeWrite();
    assertBlocks(await readToEnd(server));
  } finally {
    client.close();
    server.close();
  }
});

import assert from "node:assert/strict";
import fc from "fast-check";
import { frame } from "../../lib/binary.ts";
import {
  HEADER_READ_BYTES,
  type Parsed,
  parseFrame,
  StreamBuffer,
  StreamClosedError,
} from "../../lib/stream_buffer.ts";
import { concat } from "./bytes.ts";
import { quinnPair } from "./quic_pair.ts";

/** An in-memory stream that delivers exactly these chunks, then ends. */
function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(chunks[i++]);
      else controller.close();
    },
  });
}

/** `bytes` cut at the given offsets (sorted, deduplicated, within bounds). */
function splitAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.filter((c) => c > 0 && c < bytes.length))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const p of [...points, bytes.length]) {
    out.push(bytes.slice(from, p));
    from = p;
  }
  return out;
}

function byteByByte(bytes: Uint8Array): Uint8Array[] {
  return Array.from(bytes, (b) => Uint8Array.of(b));
}

const BODY = new TextEncoder().encode("florete tunnel header");

Deno.test("stream_buffer: parseFrame asks for the length, then for the body", () => {
  const f = frame(BODY);
  assert.deepEqual(parseFrame(new Uint8Array(0)), { done: false, need: 2 });
  assert.deepEqual(parseFrame(f.subarray(0, 1)), { done: false, need: 2 });
  assert.deepEqual(parseFrame(f.subarray(0, 2)), { done: false, need: 2 + BODY.length });
  assert.deepEqual(parseFrame(f.subarray(0, f.length - 1)), {
    done: false,
    need: 2 + BODY.length,
  });
  assert.deepEqual(parseFrame(f), { done: true, value: BODY, size: f.length });
  assert.deepEqual(parseFrame(Uint8Array.of(0, 0, 9)), {
    done: true,
    value: new Uint8Array(0),
    size: 2,
  });
});

Deno.test("stream_buffer: a frame arriving byte by byte", async () => {
  const sb = new StreamBuffer(streamOf(byteByByte(frame(BODY))));
  assert.deepEqual(await sb.read(parseFrame, 64), BODY);
  assert.deepEqual(sb.release(), new Uint8Array(0));
});

Deno.test("stream_buffer: a frame and trailing data in one chunk; release() returns the rest", async () => {
  const rest = Uint8Array.of(0xde, 0xad, 0xbe, 0xef);
  const readable = streamOf([concat(frame(BODY), rest)]);
  const sb = new StreamBuffer(readable);
  assert.deepEqual(await sb.readFrame(64), BODY);
  assert.deepEqual(sb.release(), rest);
  // The stream is unlocked again and carries what was not read yet (here: its end).
  assert.equal(readable.locked, false);
  const r = readable.getReader();
  assert.equal((await r.read()).done, true);
});

Deno.test("stream_buffer: release() copies the rest out of the chunk it arrived in", async () => {
  // As Deno delivers a QUIC stream: a 64 KiB chunk holding a frame and two bytes more. The
  // relay keeps the leftover for the tunnel's life, so it must not pin the whole chunk.
  const chunk = new Uint8Array(64 * 1024);
  chunk.set([...frame(Uint8Array.of(7)), 1, 2]);
  const sb = new StreamBuffer(streamOf([chunk.subarray(0, 5)]));
  assert.deepEqual(await sb.readFrame(16), Uint8Array.of(7));
  const rest = sb.release();
  assert.deepEqual(rest, Uint8Array.of(1, 2));
  assert.equal(rest.buffer.byteLength, 2, "the leftover is a view of the 64 KiB chunk");
});

Deno.test("stream_buffer: release() keeps bytes past the message when the stream continues", async () => {
  const readable = streamOf([concat(frame(BODY), Uint8Array.of(1, 2)), Uint8Array.of(3, 4)]);
  const sb = new StreamBuffer(readable);
  assert.deepEqual(await sb.readFrame(64), BODY);
  assert.deepEqual(sb.release(), Uint8Array.of(1, 2));
  const r = readable.getReader();
  assert.deepEqual((await r.read()).value, Uint8Array.of(3, 4));
});

Deno.test("stream_buffer: several frames split across chunk boundaries in odd places", async () => {
  const bodies = [BODY, new Uint8Array(0), Uint8Array.of(7), new Uint8Array(300).fill(5)];
  const wire = concat(...bodies.map(frame), Uint8Array.of(0xaa));
  for (const cuts of [[1], [3, 4, 5], [2, 25, 26, 30], [wire.length - 1], [7, 13, 100, 301]]) {
    const sb = new StreamBuffer(streamOf(splitAt(wire, cuts)));
    for (const b of bodies) assert.deepEqual(await sb.readFrame(300), b, `cuts ${cuts}`);
    // The trailing byte is handed back only if it came in the chunk that ended the last frame.
    const expected = cuts.includes(wire.length - 1) ? [] : [0xaa];
    assert.deepEqual(sb.release(), Uint8Array.from(expected), `cuts ${cuts}`);
  }
});

Deno.test("stream_buffer: empty chunks in the stream are harmless", async () => {
  const f = frame(BODY);
  const chunks = [new Uint8Array(0), f.subarray(0, 1), new Uint8Array(0), f.subarray(1)];
  const sb = new StreamBuffer(streamOf(chunks));
  assert.deepEqual(await sb.readFrame(64), BODY);
});

Deno.test("stream_buffer: any split of the same bytes gives the same frames (fast-check)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.uint8Array({ maxLength: 40 }), { minLength: 1, maxLength: 5 }),
      fc.uint8Array({ maxLength: 8 }),
      fc.array(fc.nat({ max: 250 }), { maxLength: 12 }),
      async (bodies, rest, cuts) => {
        const wire = concat(...bodies.map(frame), rest);
        const sb = new StreamBuffer(streamOf(splitAt(wire, cuts)));
        for (const b of bodies) assert.deepEqual(await sb.readFrame(40), b);
        // Only what was already read is handed back: a prefix of the rest.
        const back = sb.release();
        assert.deepEqual(back, rest.subarray(0, back.length));
      },
    ),
  );
});

Deno.test("stream_buffer: a stream that ends mid-message is StreamClosedError", async () => {
  const f = frame(BODY);
  for (const n of [0, 1, 2, 3, f.length - 1]) {
    const sb = new StreamBuffer(streamOf(byteByByte(f.subarray(0, n))));
    await assert.rejects(sb.readFrame(64), StreamClosedError, `ended after ${n} bytes`);
  }
});

Deno.test("stream_buffer: a message that needs more than max is a RangeError", async () => {
  const f = frame(new Uint8Array(100));
  const sb = new StreamBuffer(streamOf(byteByByte(f)));
  await assert.rejects(
    sb.read(parseFrame, 101),
    (e) => e instanceof RangeError && /102/.test(e.message) && /101/.test(e.message),
  );
  // readFrame(max) bounds the body: the 2 length bytes do not count against it.
  const exact = new StreamBuffer(streamOf(byteByByte(f)));
  assert.deepEqual(await exact.readFrame(100), new Uint8Array(100));
  const over = new StreamBuffer(streamOf(byteByByte(f)));
  await assert.rejects(over.readFrame(99), RangeError);
});

Deno.test("stream_buffer: the limit is checked before reading on, not after buffering", async () => {
  // The length says 65535 but only the header arrives: refused without waiting for the body.
  let pulls = 0;
  const readable = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulls++;
      controller.enqueue(pulls === 1 ? Uint8Array.of(0xff, 0xff) : new Uint8Array(1024));
    },
  });
  const sb = new StreamBuffer(readable);
  await assert.rejects(sb.readFrame(512), RangeError);
  assert.ok(pulls <= 2, `read ${pulls} chunks before refusing`);
  await sb.cancel();
});

// Regression: the limit was checked only while a message was incomplete, so the verdict
// depended on how the network cut the bytes.
Deno.test({
  name: "stream_buffer: a message over max is refused however it is split",
  fn: async () => {
    const f = frame(new Uint8Array(100));
    const split = new StreamBuffer(streamOf(byteByByte(f)));
    await assert.rejects(split.readFrame(10), RangeError);
    const whole = new StreamBuffer(streamOf([f]));
    await assert.rejects(whole.readFrame(10), RangeError);
  },
});

Deno.test("stream_buffer: what parse throws reaches the caller", async () => {
  class Malformed extends Error {}
  const parse = (b: Uint8Array): Parsed<number> => {
    if (b.length > 0 && b[0] !== 5) throw new Malformed("not SOCKS5");
    return b.length < 2 ? { done: false, need: 2 } : { done: true, value: b[1], size: 2 };
  };
  const bad = new StreamBuffer(streamOf([Uint8Array.of(4, 1)]));
  await assert.rejects(bad.read(parse, 16), Malformed);
  const good = new StreamBuffer(streamOf(byteByByte(Uint8Array.of(5, 9, 5, 8))));
  assert.equal(await good.read(parse, 16), 9);
  assert.equal(await good.read(parse, 16), 8);
});

Deno.test("stream_buffer: cancel() cancels the underlying stream", async () => {
  let reason: unknown = "not cancelled";
  const readable = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(Uint8Array.of(0));
    },
    cancel(r) {
      reason = r;
    },
  });
  const sb = new StreamBuffer(readable);
  await sb.cancel();
  assert.equal(reason, undefined);
  await sb.cancel(); // a second cancel does not throw
});

/** A ChunkSource (a socket read directly) delivering these chunks, then null. */
function sourceOf(chunks: Uint8Array[]) {
  let i = 0;
  let cancelled = false;
  return {
    source: {
      read: () => Promise.resolve(i < chunks.length ? chunks[i++] : null),
      cancel: () => void (cancelled = true),
    },
    cancelled: () => cancelled,
  };
}

Deno.test("stream_buffer: a chunk source split anywhere gives the same frames and the rest", async () => {
  const bytes = concat(frame(BODY), frame(Uint8Array.of(7)), Uint8Array.of(1, 2, 3));
  await fc.assert(
    fc.asyncProperty(fc.array(fc.nat(bytes.length)), async (cuts) => {
      const sb = new StreamBuffer(sourceOf(splitAt(bytes, cuts)).source);
      assert.deepEqual(await sb.readFrame(64), BODY);
      assert.deepEqual(await sb.readFrame(64), Uint8Array.of(7));
      const rest = sb.release();
      // What is left of the chunk that ended the second frame; later chunks stay unread.
      assert.deepEqual([...rest], [...Uint8Array.of(1, 2, 3).subarray(0, rest.length)]);
    }),
  );
});

Deno.test("stream_buffer: a chunk source that ends mid-message is StreamClosedError", async () => {
  const sb = new StreamBuffer(sourceOf([frame(BODY).subarray(0, 5)]).source);
  await assert.rejects(sb.readFrame(64), StreamClosedError);
});

Deno.test("stream_buffer: cancel() cancels a chunk source", async () => {
  const s = sourceOf([]);
  await new StreamBuffer(s.source).cancel();
  assert.ok(s.cancelled());
});

/** A byte stream (like Deno's QUIC streams) whose source offers `chunk` once; records the
 * size of each read the consumer asked for (BYOB) or the chunk it was given (default). */
function byteStreamOf(chunk: Uint8Array) {
  const asked: number[] = [];
  let offered = false;
  const stream = new ReadableStream({
    type: "bytes",
    pull(c) {
      if (offered) return;
      offered = true;
      const req = c.byobRequest;
      if (!req?.view) {
        asked.push(chunk.length);
        return c.enqueue(chunk.slice());
      }
      const n = Math.min(req.view.byteLength, chunk.length);
      asked.push(req.view.byteLength);
      new Uint8Array(req.view.buffer, req.view.byteOffset, n).set(chunk.subarray(0, n));
      req.respond(n);
      if (n < chunk.length) c.enqueue(chunk.slice(n));
    },
  });
  return { stream: stream as ReadableStream<Uint8Array>, asked };
}

Deno.test("stream_buffer: a byte stream's header is read into a small buffer, not a whole chunk", async () => {
  // Deno's default reads of a QUIC stream allocate 64 KiB each: one per tunnel and side.
  const tail = new Uint8Array(64 * 1024).fill(7);
  const { stream, asked } = byteStreamOf(concat(frame(BODY), tail));
  const sb = new StreamBuffer(stream);
  assert.deepEqual(await sb.readFrame(1000), BODY);
  assert.deepEqual(asked, [HEADER_READ_BYTES]);
  const { rest } = sb.handOver();
  assert.equal(rest.length, HEADER_READ_BYTES - 2 - BODY.length);
});

Deno.test("stream_buffer: handOver keeps a byte stream's reader locked and hands it on", async () => {
  const { stream } = byteStreamOf(concat(frame(BODY), Uint8Array.of(1, 2, 3)));
  const sb = new StreamBuffer(stream);
  await sb.readFrame(1000);
  const { rest, reader } = sb.handOver();
  assert.deepEqual([...rest], [1, 2, 3]);
  assert.ok(reader, "a byte stream's BYOB reader is handed on");
  assert.equal(stream.locked, true);
  // Releasing would have rejected `closed` with a TypeError (built with its stack trace).
  const settled = await Promise.race([
    reader.closed.then(() => "closed", () => "rejected"),
    new Promise((r) => setTimeout(() => r("pending"), 20)),
  ]);
  assert.equal(settled, "pending");
  reader.releaseLock();
});

Deno.test("stream_buffer: handOver of a plain stream releases it, as release() does", async () => {
  const stream = streamOf([concat(frame(BODY), Uint8Array.of(9))]);
  const sb = new StreamBuffer(stream);
  await sb.readFrame(1000);
  const { rest, reader } = sb.handOver();
  assert.deepEqual([...rest], [9]);
  assert.equal(reader, undefined);
  assert.equal(stream.locked, false);
});

Deno.test("stream_buffer: a QUIC stream is read in small buffers, the rest left for the relay", async () => {
  const { endpoint, client, server } = await quinnPair();
  try {
    const data = new Uint8Array(200 * 1024).map((_, i) => i * 7);
    const out = await client.createBidirectionalStream();
    const w = out.writable.getWriter();
    await w.write(concat(frame(BODY), data));
    await w.close();
    const incoming = server.incomingBidirectionalStreams.getReader();
    const { value: s } = await incoming.read();
    incoming.releaseLock();
    // Wait until most of it arrived: Deno's own read would then take a 64 KiB chunk.
    await new Promise((r) => setTimeout(r, 100));
    const sb = new StreamBuffer(s!.readable);
    const held: number[] = [];
    const body = await sb.read((b) => {
      held.push(b.buffer.byteLength);
      return parseFrame(b);
    }, 1024);
    assert.deepEqual(body, BODY);
    assert.ok(
      held.every((n) => n <= HEADER_READ_BYTES),
      `a header read held buffers of ${held} bytes (bound ${HEADER_READ_BYTES})`,
    );
    const rest = [sb.release()];
    for await (const c of s!.readable) rest.push(c);
    assert.deepEqual(concat(...rest), data, "every byte after the header, in order");
  } finally {
    client.close();
    server.close();
    endpoint.close();
  }
});

/**
 * exchange() against an in-memory node: what it sends, and every way a reply can go wrong.
 */
import assert from "node:assert/strict";
import { frame } from "../../lib/binary.ts";
import { exchange, ExchangeError } from "../../lib/exchange.ts";
import { MapReplySchema, StatusSchema } from "../../lib/request_bodies.ts";
import {
  encodeMapRequest,
  encodePingRequest,
  encodeTunnelReply,
  TunnelStatus,
} from "../../lib/tunnel_header.ts";

/** A stream whose far end answers with `chunks` once the request arrived (or never). */
function node(chunks: Uint8Array[] | "silent", then: "wait" | "close" = "wait") {
  const sent: Uint8Array[] = [];
  let finished = false;
  let aborted = false;
  let ctl!: ReadableStreamDefaultController<Uint8Array>;
  const stream = {
    readable: new ReadableStream<Uint8Array>({ start: (c) => void (ctl = c) }),
    writable: new WritableStream<Uint8Array>({
      write(c) {
        sent.push(c);
        if (chunks !== "silent") { for (const x of chunks) ctl.enqueue(x); }
        if (then === "close") ctl.close();
      },
      close: () => void (finished = true),
      abort: () => void (aborted = true),
    }),
  };
  return { stream, sent, finished: () => finished, aborted: () => aborted };
}

const ok = frame(encodeTunnelReply({ status: TunnelStatus.OK, message: "" }));
const json = (v: unknown) => frame(new TextEncoder().encode(JSON.stringify(v)));

async function rejects(p: Promise<unknown>, code: string, pattern?: RegExp) {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof ExchangeError, String(e));
    assert.equal(e.code, code);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("exchange: a ping is one framed request, our side finished, an OK reply", async () => {
  const n = node([ok]);
  const r = await exchange(n.stream, encodePingRequest(), { timeoutMs: 1000 });
  assert.equal(r.reply.status, TunnelStatus.OK);
  assert.deepEqual(n.sent, [frame(encodePingRequest())]);
  assert.equal(n.finished(), true);
});

Deno.test("exchange: a map reply split byte by byte is parsed against its schema", async () => {
  const whole = new Uint8Array([...ok, ...json({ map: "cluster: acme\n", signature: "sig" })]);
  const n = node([...whole].map((b) => Uint8Array.of(b)));
  const r = await exchange(n.stream, encodeMapRequest(), { timeoutMs: 1000, body: MapReplySchema });
  assert.deepEqual(r.body, { map: "cluster: acme\n", signature: "sig" });
});

Deno.test("exchange: a tunnel keeps the stream open and hands over the bytes after the reply", async () => {
  const n = node([new Uint8Array([...ok, 1, 2, 3])]);
  const r = await exchange(n.stream, encodePingRequest(), { timeoutMs: 1000, keepOpen: true });
  assert.deepEqual([...r.leftover], [1, 2, 3]);
  assert.equal(n.finished(), false);
});

Deno.test("exchange: a tunnel on a byte stream hands on its reader and writer, still locked", async () => {
  let ctl!: ReadableByteStreamController;
  const readable = new ReadableStream({ type: "bytes", start: (c) => void (ctl = c) });
  const writable = new WritableStream<Uint8Array>({
    write: () => ctl.enqueue(new Uint8Array([...ok, 1, 2])),
  });
  const r = await exchange(
    { readable: readable as ReadableStream<Uint8Array>, writable },
    encodePingRequest(),
    { timeoutMs: 1000, keepOpen: true },
  );
  assert.deepEqual([...r.leftover], [1, 2]);
  assert.ok(r.reader && r.writer, "the relay takes them over (no releaseLock, no TypeError)");
  assert.equal(readable.locked, true);
  assert.equal(writable.locked, true);
});

Deno.test("exchange: a refusal is a reply, not an error, and carries no body", async () => {
  const no = frame(encodeTunnelReply({ status: TunnelStatus.NOT_ALLOWED, message: "not you" }));
  const r = await exchange(node([no]).stream, encodeMapRequest(), {
    timeoutMs: 1000,
    body: MapReplySchema,
  });
  assert.equal(r.reply.status, TunnelStatus.NOT_ALLOWED);
  assert.equal(r.reply.message, "not you");
  assert.equal(r.body, undefined);
});

Deno.test("exchange: a body that misses a field is a malformed reply naming the field", async () => {
  const n = node([ok, json({ version: "1", commit: "x" })]);
  await rejects(
    exchange(n.stream, encodeMapRequest(), {
      timeoutMs: 1000,
      body: StatusSchema,
      what: "n1 status request",
    }),
    "malformed",
    /n1 status request at config_hash/,
  );
});

Deno.test("exchange: a body that is not JSON, and a garbled header, are malformed", async () => {
  await rejects(
    exchange(node([ok, frame(new TextEncoder().encode("{nope"))]).stream, encodeMapRequest(), {
      timeoutMs: 1000,
      body: MapReplySchema,
    }),
    "malformed",
    /not JSON/,
  );
  await rejects(
    exchange(node([frame(Uint8Array.of(9, 0, 0))]).stream, encodePingRequest(), {
      timeoutMs: 1000,
    }),
    "malformed",
  );
});

Deno.test("exchange: no reply in time is a timeout; a fired signal is aborted", async () => {
  await rejects(
    exchange(node("silent").stream, encodePingRequest(), { timeoutMs: 30 }),
    "timeout",
    /within 30 ms/,
  );
  const stop = new AbortController();
  const p = exchange(node("silent").stream, encodePingRequest(), {
    timeoutMs: 5000,
    signal: stop.signal,
  });
  stop.abort();
  await rejects(p, "aborted");
});

Deno.test("exchange: a stream that ends mid-reply is a stream error; a tunnel's is aborted", async () => {
  const n = node([Uint8Array.of(0, 5, 1)], "close");
  await rejects(
    exchange(n.stream, encodePingRequest(), { timeoutMs: 1000, keepOpen: true, what: "tunnel" }),
    "stream",
    /tunnel failed/,
  );
  assert.equal(n.aborted(), true);
});

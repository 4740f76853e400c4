import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ByteCursor,
  ByteWriter,
  DecodeError,
  frame,
  MAX_FRAME_BYTES,
  toHex,
} from "../../lib/binary.ts";

function u64RoundTrip(v: number): number {
  const c = new ByteCursor(new ByteWriter().u64(v).finish());
  const out = c.u64();
  c.end();
  return out;
}

Deno.test("binary: u64 is 8 bytes big-endian", () => {
  assert.deepEqual(
    new ByteWriter().u64(0x0102_0304_0506).finish(),
    Uint8Array.of(0, 0, 1, 2, 3, 4, 5, 6),
  );
  assert.deepEqual(new ByteWriter().u64(0).finish(), new Uint8Array(8));
});

Deno.test("binary: u64 round trips near 2^53 and around the 32-bit boundary", () => {
  const edges = [
    0,
    1,
    0xffff,
    0x1_0000,
    2 ** 31 - 1,
    2 ** 31,
    2 ** 32 - 1,
    2 ** 32,
    2 ** 32 + 1,
    2 ** 48,
    2 ** 52,
    2 ** 53 - 2,
    Number.MAX_SAFE_INTEGER,
    Date.UTC(2030, 0, 1),
  ];
  for (const v of edges) assert.equal(u64RoundTrip(v), v, `u64 ${v}`);
});

Deno.test("binary: u64 round trips every safe non-negative integer (fast-check)", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (v) => {
      assert.equal(u64RoundTrip(v), v);
    }),
  );
});

Deno.test("binary: u64 refuses values that are not safe non-negative integers", () => {
  for (const v of [2 ** 53, 2 ** 64, -1, 1.5, NaN, Infinity, -Infinity]) {
    assert.throws(() => new ByteWriter().u64(v), RangeError, `u64 ${v}`);
  }
});

Deno.test("binary: u64 on the wire above 2^53 - 1 is a DecodeError", () => {
  // 2^53 = 0x0020_0000_0000_0000; the writer refuses it, so build the bytes by hand.
  const over = Uint8Array.of(0x00, 0x20, 0, 0, 0, 0, 0, 0);
  assert.throws(() => new ByteCursor(over).u64(), DecodeError);
  assert.throws(() => new ByteCursor(new Uint8Array(8).fill(0xff)).u64(), DecodeError);
  const max = Uint8Array.of(0x00, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
  assert.equal(new ByteCursor(max).u64(), Number.MAX_SAFE_INTEGER);
});

Deno.test("binary: u16 refuses values outside 0..65535", () => {
  assert.deepEqual(new ByteWriter().u16(0xabcd).finish(), Uint8Array.of(0xab, 0xcd));
  assert.throws(() => new ByteWriter().u16(0x1_0000), RangeError);
  assert.throws(() => new ByteWriter().u16(-1), RangeError);
});

Deno.test("binary: every field round trips in one message", () => {
  const body = new ByteWriter().u8(7).u16(513).u64(2 ** 40 + 3).bytes(Uint8Array.of(1, 2))
    .short(Uint8Array.of(9)).long(new Uint8Array(300).fill(4)).text("héllo").finish();
  const c = new ByteCursor(body);
  assert.equal(c.u8(), 7);
  assert.equal(c.u16(), 513);
  assert.equal(c.u64(), 2 ** 40 + 3);
  assert.deepEqual(c.bytes(2), Uint8Array.of(1, 2));
  assert.deepEqual(c.short(), Uint8Array.of(9));
  assert.deepEqual(c.long(), new Uint8Array(300).fill(4));
  assert.equal(c.text(), "héllo");
  c.end();
});

Deno.test("binary: short fields refuse more than 255 bytes", () => {
  new ByteWriter().short(new Uint8Array(255));
  assert.throws(() => new ByteWriter().short(new Uint8Array(256)), RangeError);
  assert.throws(() => new ByteWriter().text("é".repeat(128)), RangeError, "limit is in bytes");
});

Deno.test("binary: every truncation of a message is a DecodeError", () => {
  const body = new ByteWriter().u8(1).u16(2).u64(3).short(Uint8Array.of(4, 5)).long(
    Uint8Array.of(6),
  ).text("seven").finish();
  const readAll = (b: Uint8Array) => {
    const c = new ByteCursor(b);
    c.u8();
    c.u16();
    c.u64();
    c.short();
    c.long();
    c.text();
    c.end();
  };
  readAll(body);
  for (let n = 0; n < body.length; n++) {
    assert.throws(() => readAll(body.subarray(0, n)), DecodeError, `cut at ${n}`);
  }
});

Deno.test("binary: a length prefix larger than what follows is a DecodeError", () => {
  assert.throws(() => new ByteCursor(Uint8Array.of(3, 1, 2)).short(), DecodeError);
  assert.throws(() => new ByteCursor(Uint8Array.of(0, 3, 1, 2)).long(), DecodeError);
  assert.throws(() => new ByteCursor(Uint8Array.of(1, 2)).bytes(3), DecodeError);
});

Deno.test("binary: trailing bytes are a DecodeError from end()", () => {
  const c = new ByteCursor(Uint8Array.of(1, 2, 3));
  assert.equal(c.u8(), 1);
  assert.throws(() => c.end(), (e) => e instanceof DecodeError && /2 unexpected/.test(e.message));
  new ByteCursor(new Uint8Array(0)).end();
});

Deno.test("binary: text that is not UTF-8 is a DecodeError", () => {
  for (const bad of [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xc0, 0x80]]) {
    const c = new ByteCursor(Uint8Array.of(bad.length, ...bad));
    assert.throws(() => c.text(), DecodeError, toHex(Uint8Array.from(bad)));
  }
  assert.throws(() => new ByteCursor(Uint8Array.of(5, 0x61)).text(), DecodeError);
});

Deno.test("binary: random bytes only ever raise DecodeError (fast-check)", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
      try {
        const c = new ByteCursor(b);
        c.u8();
        c.u64();
        c.text();
        c.long();
        c.end();
      } catch (e) {
        assert.ok(e instanceof DecodeError, String(e));
      }
    }),
  );
});

Deno.test("binary: frame prefixes the body with its u16 length", () => {
  assert.deepEqual(frame(Uint8Array.of(9, 8, 7)), Uint8Array.of(0, 3, 9, 8, 7));
  assert.deepEqual(frame(new Uint8Array(0)), Uint8Array.of(0, 0));
  const big = frame(new Uint8Array(MAX_FRAME_BYTES));
  assert.deepEqual(big.subarray(0, 2), Uint8Array.of(0xff, 0xff));
  assert.equal(big.length, MAX_FRAME_BYTES + 2);
  assert.throws(() => frame(new Uint8Array(MAX_FRAME_BYTES + 1)), RangeError);
});

Deno.test("binary: toHex is lowercase and zero-padded", () => {
  assert.equal(toHex(Uint8Array.of(0, 0x0a, 0xff, 0x7f)), "000aff7f");
  assert.equal(toHex(new Uint8Array(0)), "");
});

import assert from "node:assert/strict";
import fc from "fast-check";
import { DelayLine } from "./delay_line.ts";

Deno.test("delay line: pops only what is due, earliest first", () => {
  const l = new DelayLine<string>();
  assert.equal(l.nextAt(), undefined);
  l.push(30, "c");
  l.push(10, "a");
  l.push(20, "b");
  assert.equal(l.size, 3);
  assert.equal(l.nextAt(), 10);
  assert.equal(l.popDue(9.9), undefined);
  assert.equal(l.popDue(25), "a");
  assert.equal(l.popDue(25), "b");
  assert.equal(l.popDue(25), undefined);
  assert.equal(l.nextAt(), 30);
  assert.equal(l.popDue(30), "c");
  assert.equal(l.size, 0);
});

Deno.test("delay line: equal times keep insertion order (no reordering without jitter)", () => {
  const l = new DelayLine<number>();
  for (let i = 0; i < 1000; i++) l.push(5, i);
  const out: number[] = [];
  for (let v = l.popDue(5); v !== undefined; v = l.popDue(5)) out.push(v);
  assert.deepEqual(out, Array.from({ length: 1000 }, (_, i) => i));
});

Deno.test("delay line: clear drops everything and says how much", () => {
  const l = new DelayLine<number>();
  l.push(1, 1);
  l.push(2, 2);
  assert.equal(l.clear(), 2);
  assert.equal(l.size, 0);
  assert.equal(l.popDue(100), undefined);
});

Deno.test("delay line: any push order comes out sorted by (time, insertion)", () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 300 }), (times) => {
      const l = new DelayLine<number>();
      times.forEach((t, i) => l.push(t, i));
      const out: number[] = [];
      for (let v = l.popDue(Infinity); v !== undefined; v = l.popDue(Infinity)) out.push(v);
      const want = times.map((t, i) => [t, i]).sort((a, b) => a[0] - b[0] || a[1] - b[1])
        .map(([, i]) => i);
      assert.deepEqual(out, want);
    }),
  );
});

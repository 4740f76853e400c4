import assert from "node:assert/strict";
import { TRIM_FREED_BYTES, trimDecision, type TrimState } from "../../lib/malloc_trim.ts";

const MB = 1024 * 1024;

/** Feeds free-byte readings in order; the readings at which a trim was due. */
function trimsAt(readings: number[]): number[] {
  let state: TrimState = { lowFree: readings[0] };
  const at: number[] = [];
  readings.forEach((free, i) => {
    const d = trimDecision(state, free);
    if (d.trim) at.push(i);
    state = d.next;
  });
  return at;
}

Deno.test("malloc_trim: a burst that freed TRIM_FREED_BYTES or more is trimmed once", () => {
  assert.deepEqual(trimsAt([2 * MB, 1 * MB, 0.5 * MB, 30 * MB, 30 * MB, 29 * MB]), [3]);
});

Deno.test("malloc_trim: free bytes that move by less than the threshold never trim", () => {
  const steady = Array.from({ length: 50 }, (_, i) => 4 * MB + (i % 5) * MB);
  assert.deepEqual(trimsAt(steady), []);
});

Deno.test("malloc_trim: memory reused after a trim and freed again trims again", () => {
  // 30 MB free after a burst (trim), reused down to 5 MB, freed again up to 30 MB.
  assert.deepEqual(trimsAt([1 * MB, 30 * MB, 20 * MB, 5 * MB, 30 * MB, 30 * MB]), [1, 4]);
});

Deno.test("malloc_trim: the threshold is inclusive and measured from the lowest reading", () => {
  assert.deepEqual(trimsAt([10 * MB, 3 * MB, 3 * MB + TRIM_FREED_BYTES - 1]), []);
  assert.deepEqual(trimsAt([10 * MB, 3 * MB, 3 * MB + TRIM_FREED_BYTES]), [2]);
});

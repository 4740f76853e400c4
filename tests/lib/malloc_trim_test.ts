import assert from "node:assert/strict";
import {
  afterTrim,
  TRIM_GROWTH_BYTES,
  trimDecision,
  type TrimReading,
} from "../../lib/malloc_trim.ts";

const MB = 1024 * 1024;

/** Feeds readings in order, as startMallocTrim does (a trim brings resident memory down to
 * what is live, `live`); the readings at which a trim was due. */
function trimsAt(readings: TrimReading[], live = readings[0].resident): number[] {
  let state = afterTrim(readings[0]);
  const at: number[] = [];
  readings.forEach((r, i) => {
    const d = trimDecision(state, r);
    state = d.trim ? afterTrim({ resident: live, free: r.free }) : d.next;
    if (d.trim) at.push(i);
  });
  return at;
}

const r = (residentMb: number, freeMb: number): TrimReading => ({
  resident: residentMb * MB,
  free: freeMb * MB,
});

Deno.test("malloc_trim: a burst that left its memory resident and free is trimmed once", () => {
  // In use at 70 MB, then freed (30 MB free, still resident): trimmed down to 45 MB.
  const readings = [r(40, 2), r(70, 1), r(70, 30), r(45, 30), r(46, 29), r(45, 30)];
  assert.deepEqual(trimsAt(readings, 45 * MB), [2]);
});

Deno.test("malloc_trim: a burst shorter than a check, reusing free memory, is still trimmed", () => {
  // Free bytes read 30 MB before and after (the burst reused memory a trim had returned, and
  // freed it again between two checks); only resident memory shows it.
  assert.deepEqual(trimsAt([r(40, 30), r(70, 30)]), [1]);
});

Deno.test("malloc_trim: growth that is live data, not free memory, does not trim", () => {
  assert.deepEqual(trimsAt([r(40, 2), r(60, 3), r(90, 1)]), []);
});

Deno.test("malloc_trim: resident memory that moves by less than the threshold never trims", () => {
  const steady = Array.from({ length: 50 }, (_, i) => r(40 + (i % 5), 20));
  assert.deepEqual(trimsAt(steady), []);
});

Deno.test("malloc_trim: after a trim, growth counts from what the process kept", () => {
  // Trimmed at 70 down to 45 (live), grows again to 50 (under the threshold), then to 60.
  assert.deepEqual(trimsAt([r(40, 2), r(70, 30), r(50, 25), r(60, 20)], 45 * MB), [1, 3]);
});

Deno.test("malloc_trim: a burst trimmed in its middle is trimmed again once it frees", () => {
  // Grows 40 → 60 with 10 MB free (trimmed, down to 55), grows to 62 (under the threshold),
  // then ends: 30 MB free, no further growth.
  assert.deepEqual(trimsAt([r(40, 2), r(60, 10), r(62, 4), r(62, 30)], 55 * MB), [1, 3]);
});

Deno.test("malloc_trim: the threshold is inclusive and measured from the lowest reading", () => {
  const grow = (by: number) => [r(50, 20), r(30, 20), { resident: 30 * MB + by, free: 20 * MB }];
  assert.deepEqual(trimsAt(grow(TRIM_GROWTH_BYTES - 1)), []);
  assert.deepEqual(trimsAt(grow(TRIM_GROWTH_BYTES)), [2]);
  assert.deepEqual(trimsAt([r(30, 0), { resident: 50 * MB, free: TRIM_GROWTH_BYTES - 1 }]), []);
});

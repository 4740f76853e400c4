import assert from "node:assert/strict";
import {
  readStallClock,
  runningSince,
  STALL_LOG_INTERVAL_MS,
  STALL_LOG_MS,
  STALL_TICK_MS,
  startStallClock,
} from "../../lib/stall_clock.ts";

Deno.test("stall_clock: readings on time count no stall", () => {
  let c = startStallClock(1000);
  for (let t = 1000 + STALL_TICK_MS; t <= 3000; t += STALL_TICK_MS) {
    const r = readStallClock(c, t);
    assert.equal(r.stallMs, 0);
    assert.equal(r.report, undefined);
    c = r.clock;
  }
  assert.equal(c.stalledMs, 0);
  assert.equal(runningSince(c, 1000, 0), 2000);
});

Deno.test("stall_clock: a reading between ticks (a deadline's) is no stall", () => {
  const c = readStallClock(startStallClock(0), 30).clock;
  assert.equal(readStallClock(c, 90).stallMs, 0);
});

Deno.test("stall_clock: a gap of 2.8 s counts 2.7 s not running, reported once", () => {
  const c0 = startStallClock(0);
  const r = readStallClock(c0, 2_800);
  assert.equal(r.stallMs, 2_800 - STALL_TICK_MS);
  assert.deepEqual(r.report, { maxMs: 2_700, count: 1, totalMs: 2_700 });
  // A wait started before the stall ran only for the tick's worth of it.
  assert.equal(runningSince(r.clock, 0, 0), STALL_TICK_MS);
  // A wait started after it is not charged for it.
  const later = readStallClock(r.clock, 2_900).clock;
  assert.equal(runningSince(later, 2_800, 2_700), 100);
});

Deno.test("stall_clock: short lags add up but are not reported", () => {
  let c = startStallClock(0);
  let t = 0;
  for (let i = 0; i < 10; i++) {
    t += STALL_TICK_MS + 200;
    const r = readStallClock(c, t);
    assert.equal(r.report, undefined);
    c = r.clock;
  }
  assert.equal(c.stalledMs, 2_000);
});

Deno.test("stall_clock: stalls in a burst make one event that counts them", () => {
  let c = startStallClock(0);
  let r = readStallClock(c, STALL_LOG_MS + STALL_TICK_MS);
  assert.equal(r.report?.count, 1);
  c = r.clock;
  const at = c.last;
  // Two more within the interval: held back.
  r = readStallClock(c, at + 1_500);
  assert.equal(r.report, undefined);
  r = readStallClock(r.clock, at + 4_000);
  assert.equal(r.report, undefined);
  // The first reading past the interval (ticking on time meanwhile) reports both.
  let t = at + 4_000;
  let held = r.clock;
  while (t < at + STALL_LOG_INTERVAL_MS) {
    t += STALL_TICK_MS;
    r = readStallClock(held, t);
    held = r.clock;
    if (t < at + STALL_LOG_INTERVAL_MS) assert.equal(r.report, undefined);
  }
  assert.deepEqual(r.report, {
    maxMs: 4_000 - 1_500 - STALL_TICK_MS,
    count: 2,
    totalMs: held.stalledMs,
  });
  assert.equal(r.clock.unlogged, 0);
});

Deno.test("stall_clock: a reading from the past (an earlier timer) counts nothing", () => {
  const c = readStallClock(startStallClock(0), 100).clock;
  const r = readStallClock(c, 50);
  assert.equal(r.stallMs, 0);
  assert.equal(r.clock.last, 100);
});

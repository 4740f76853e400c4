import assert from "node:assert/strict";
import { STALL_TICK_MS } from "../../lib/stall_clock.ts";
import { raceSignal } from "../../lib/quic_client.ts";
import { runningMark, runningMsSince, runningTimeout } from "../../lib/stall_watch.ts";
import { watchTimers } from "./armed_timers.ts";

/** The deadlines are unref'd: a test holds the process open while it waits for one. */
async function fired(signal: AbortSignal) {
  const hold = setTimeout(() => {}, 10_000);
  try {
    await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
  } finally {
    clearTimeout(hold);
  }
}

/** Blocks the event loop: to this process, a stall. */
function block(ms: number) {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* stalled */ }
}

Deno.test("stall_watch: a blocked event loop does not count as running time", async () => {
  const mark = runningMark();
  block(600);
  await new Promise((r) => setTimeout(r, 150));
  const ran = runningMsSince(mark);
  assert.ok(ran < 400, `counted ${ran} ms of a 600 ms block and a 150 ms wait`);
  assert.ok(ran >= 140, `counted ${ran} ms, less than the 150 ms wait`);
});

Deno.test("stall_watch: runningTimeout waits again for the part a stall took", async () => {
  const t0 = performance.now();
  using deadline = runningTimeout(300);
  const signal = deadline.signal;
  block(500); // the timer is due during the stall
  await fired(signal);
  const waited = performance.now() - t0;
  // Up to one tick of a stall counts as running (stall_clock.ts).
  assert.ok(
    waited >= 500 + 300 - STALL_TICK_MS - 1,
    `fired ${waited} ms after start: the stall counted`,
  );
  assert.equal((signal.reason as DOMException).name, "TimeoutError");
});

Deno.test("stall_watch: runningTimeout fires on time without a stall", async () => {
  const t0 = performance.now();
  using deadline = runningTimeout(200);
  const signal = deadline.signal;
  await fired(signal);
  const waited = performance.now() - t0;
  assert.ok(waited >= 199, `fired after ${waited} ms`);
});

Deno.test("stall_watch: a deadline whose wait ended leaves no timer armed", async () => {
  const timers = watchTimers();
  try {
    {
      using deadline = runningTimeout(5_000);
      assert.equal(timers.armed("stall_watch.ts"), 1);
      assert.equal(await raceSignal(Promise.resolve("answer"), deadline.signal), "answer");
    }
    assert.equal(timers.armed("stall_watch.ts"), 0, "the deadline is still armed");
    const d = runningTimeout(5_000);
    d.clear();
    assert.equal(timers.armed("stall_watch.ts"), 0, "clear() left the deadline armed");
    assert.equal(d.signal.aborted, false);
  } finally {
    timers.restore();
  }
});

Deno.test("stall_watch: a deadline that fired is not armed again", async () => {
  const timers = watchTimers();
  try {
    const d = runningTimeout(50);
    await fired(d.signal);
    assert.equal(timers.armed("stall_watch.ts"), 0);
    d.clear(); // harmless after it fired
  } finally {
    timers.restore();
  }
});

import assert from "node:assert/strict";
import {
  type Clock,
  COOLDOWN_S,
  planFaults,
  runSchedule,
  ScheduleError,
  WARMUP_S,
} from "./schedule.ts";

/** A clock that only moves when someone sleeps (or a fault takes time). */
function fakeClock(): Clock & { t: number } {
  const c = {
    t: 0,
    now: () => c.t,
    sleep: (s: number) => {
      c.t += Math.max(0, s);
      return Promise.resolve();
    },
  };
  return c;
}

Deno.test("schedule: faults spread evenly after the warm-up, before the cool-down", () => {
  const plan = planFaults([{ fault: "a", window_s: 20 }, { fault: "b", window_s: 40 }], 180);
  const gap = (180 - WARMUP_S - COOLDOWN_S - 60) / 2;
  assert.deepEqual(plan.map((p) => p.at_s), [WARMUP_S, WARMUP_S + 20 + gap]);
  const last = plan.at(-1)!;
  assert.ok(last.at_s + last.window_s + gap <= 180 - COOLDOWN_S + 1e-9);
});

Deno.test("schedule: a run too short for its faults is refused with the length it needs", () => {
  assert.throws(
    () => planFaults([{ fault: "a", window_s: 100 }, { fault: "b", window_s: 100 }], 180),
    (e: Error) => e instanceof ScheduleError && /--minutes 4 or more/.test(e.message),
  );
});

Deno.test("schedule: no faults, the whole run is traffic", async () => {
  const clock = fakeClock();
  const out = await runSchedule(planFaults([], 60), 60, clock, () => Promise.resolve(1));
  assert.deepEqual(out, []);
  assert.equal(clock.now(), 60);
});

Deno.test("schedule: each fault starts at its time and the run lasts its length", async () => {
  const clock = fakeClock();
  const plan = planFaults([{ fault: "a", window_s: 10 }, { fault: "b", window_s: 10 }], 120);
  const starts: Array<[string, number]> = [];
  await runSchedule(plan, 120, clock, (p, at) => {
    starts.push([p.fault, at]);
    clock.t += 5; // the fault takes less than its window
    return Promise.resolve();
  });
  assert.deepEqual(starts, plan.map((p) => [p.fault, p.at_s]));
  assert.equal(clock.now(), 120);
});

Deno.test("schedule: a fault that overruns delays the next one, never overlaps it", async () => {
  const clock = fakeClock();
  const plan = planFaults([{ fault: "a", window_s: 10 }, { fault: "b", window_s: 10 }], 60);
  const spans: Array<[number, number]> = [];
  await runSchedule(plan, 60, clock, (_p, at) => {
    clock.t += 30; // far past its window
    spans.push([at, clock.t]);
    return Promise.resolve();
  });
  assert.equal(spans.length, 2);
  assert.ok(
    spans[1][0] >= spans[0][1],
    `second started at ${spans[1][0]}, first ended ${spans[0][1]}`,
  );
});

Deno.test("schedule: stopping (Ctrl-C) runs no further fault", async () => {
  const clock = fakeClock();
  const plan = planFaults([{ fault: "a", window_s: 5 }, { fault: "b", window_s: 5 }], 60);
  let stopped = false;
  const ran: string[] = [];
  const out = await runSchedule(plan, 60, clock, (p) => {
    ran.push(p.fault);
    stopped = true;
    return Promise.resolve(p.fault);
  }, () => stopped);
  assert.deepEqual(ran, ["a"]);
  assert.deepEqual(out, ["a"]);
  assert.ok(clock.now() < 60, "it waited out the run after a stop");
});

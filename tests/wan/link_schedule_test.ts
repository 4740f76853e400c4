import assert from "node:assert/strict";
import {
  defaultQueuePackets,
  delivered,
  HELD_PACKETS_MAX,
  MIN_QUEUE_PACKETS,
  newDirection,
  offer,
  resolveProfile,
  setPartitioned,
  setProfile,
  type Verdict,
} from "./link_schedule.ts";
import { DelayLine } from "./delay_line.ts";

/** Never loses, no jitter draw matters. */
const never = () => 0.999999;
const MTU = 1500;
/** 1500 bytes at 100 Mbit/s: 12,000 bits / 100,000 bits per ms. */
const TX_100 = 0.12;

function at(v: Verdict): number {
  assert.ok("deliverAt" in v, `expected delivery, got ${JSON.stringify(v)}`);
  return v.deliverAt;
}

/** A seeded PRNG (mulberry32), so statistical tests are reproducible. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("link schedule: delay only delivers each packet delayMs later, in order", () => {
  const d = newDirection({ delayMs: 20 });
  assert.equal(at(offer(d, 1000, MTU, never)), 1020);
  assert.equal(at(offer(d, 1000, MTU, never)), 1020);
  assert.equal(at(offer(d, 1003.5, 60, never)), 1023.5);
  assert.equal(d.held, 3);
  delivered(d);
  assert.equal(d.held, 2);
});

Deno.test("link schedule: the rate serialises back-to-back packets", () => {
  const d = newDirection({ delayMs: 10, rateMbit: 100 });
  const times = Array.from({ length: 4 }, () => at(offer(d, 0, MTU, never)));
  times.forEach((t, i) => assert.ok(Math.abs(t - (10 + (i + 1) * TX_100)) < 1e-9, `${i}: ${t}`));
  // An idle link starts the next packet at once, not after the old backlog.
  assert.ok(Math.abs(at(offer(d, 100, MTU, never)) - (110 + TX_100)) < 1e-9);
  // Small packets take proportionally less time.
  assert.ok(Math.abs(at(offer(d, 200, 150, never)) - (210 + TX_100 / 10)) < 1e-9);
});

Deno.test("link schedule: a full queue drops at the tail and admits again once it drains", () => {
  const d = newDirection({ delayMs: 5, rateMbit: 100, queuePackets: 3 });
  const v = Array.from({ length: 5 }, () => offer(d, 0, MTU, never));
  assert.deepEqual(v.slice(3), [{ drop: "queue" }, { drop: "queue" }]);
  assert.ok(Math.abs(at(v[2]) - (5 + 3 * TX_100)) < 1e-9);
  // The first packet has left the serialiser at 0.12 ms: one slot is free.
  assert.ok("deliverAt" in offer(d, TX_100, MTU, never));
  assert.deepEqual(offer(d, TX_100, MTU, never), { drop: "queue" });
  // Later, all gone: the queue is empty again.
  for (let i = 0; i < 3; i++) assert.ok("deliverAt" in offer(d, 10, MTU, never));
});

Deno.test("link schedule: a sender at twice the rate gets the rate, the rest is dropped", () => {
  // 200 Mbit/s offered for one second of fake time into 100 Mbit/s with a 2 × BDP queue.
  const d = newDirection({ delayMs: 20, rateMbit: 100 });
  const line = new DelayLine<number>();
  const gap = TX_100 / 2;
  let deliveredBytes = 0;
  let dropped = 0;
  for (let now = 0; now < 1000; now += gap) {
    for (let s = line.popDue(now); s !== undefined; s = line.popDue(now)) {
      delivered(d);
      deliveredBytes += s;
    }
    const v = offer(d, now, MTU, never);
    if ("drop" in v) dropped++;
    else line.push(v.deliverAt, MTU);
  }
  const mbit = deliveredBytes * 8 / 1e6; // over one second
  // Delivery starts 20 ms late, so ~98 Mbit of the second's capacity arrives within it.
  assert.ok(mbit > 97 && mbit <= 100, `delivered ${mbit} Mbit in 1 s`);
  // 16,667 offered; 8,333 serialised in the second, 667 still queued at its end.
  assert.ok(dropped > 7550 && dropped < 7750, `dropped ${dropped}`);
  assert.ok(d.held <= defaultQueuePackets({ delayMs: 20, rateMbit: 100 }) + 170);
});

Deno.test("link schedule: loss draws from the injected random source", () => {
  const d = newDirection({ delayMs: 1, lossPct: 1 });
  assert.deepEqual(offer(d, 0, MTU, () => 0.0099), { drop: "loss" });
  assert.ok("deliverAt" in offer(d, 0, MTU, () => 0.01));
  // Statistically: 1% of 100,000 packets, seeded.
  const r = seeded(42);
  let lost = 0;
  for (let i = 0; i < 100_000; i++) {
    if ("drop" in offer(d, 0, MTU, r)) lost++;
    else delivered(d);
  }
  assert.ok(lost > 900 && lost < 1100, `lost ${lost}`);
  // 0% never draws; 100% drops everything.
  const none = newDirection({ delayMs: 1 });
  assert.ok("deliverAt" in offer(none, 0, MTU, () => 0));
  const all = newDirection({ delayMs: 1, lossPct: 100 });
  assert.deepEqual(offer(all, 0, MTU, () => 0.999999), { drop: "loss" });
});

Deno.test("link schedule: jitter spreads the delay within ±jitterMs and may reorder", () => {
  const d = newDirection({ delayMs: 20, jitterMs: 5 });
  assert.equal(at(offer(d, 0, MTU, () => 0)), 15);
  assert.equal(at(offer(d, 0, MTU, () => 0.5)), 20);
  const late = at(offer(d, 0, MTU, () => 0.999));
  assert.ok(late > 24.9 && late < 25);
  // The later packet overtakes the earlier one: reordering, as jitter asks.
  const first = at(offer(d, 1, MTU, () => 0.99));
  const second = at(offer(d, 2, MTU, () => 0.01));
  assert.ok(second < first);
  // Never negative.
  const wide = newDirection({ delayMs: 1, jitterMs: 10 });
  assert.equal(at(offer(wide, 0, MTU, () => 0)), 0);
});

Deno.test("link schedule: default queue is 2 × BDP in MTU packets, with a floor", () => {
  // 100 Mbit/s × 40 ms RTT = 500,000 B; × 2 / 1500 = 666.7.
  assert.equal(defaultQueuePackets({ delayMs: 20, rateMbit: 100 }), 667);
  assert.equal(defaultQueuePackets({ delayMs: 50, rateMbit: 50 }), 834);
  assert.equal(defaultQueuePackets({ delayMs: 0.1, rateMbit: 100 }), MIN_QUEUE_PACKETS);
  assert.equal(defaultQueuePackets({ delayMs: 20 }), HELD_PACKETS_MAX);
  assert.equal(resolveProfile({ delayMs: 20, rateMbit: 100, queuePackets: 10 }).queuePackets, 10);
});

Deno.test("link schedule: nonsense profiles are refused naming the field", () => {
  assert.throws(() => resolveProfile({ delayMs: -1 }), /delayMs -1 must be a number ≥ 0/);
  assert.throws(() => resolveProfile({ delayMs: NaN }), /delayMs/);
  assert.throws(() => resolveProfile({ delayMs: 1, lossPct: 101 }), /lossPct 101/);
  assert.throws(() => resolveProfile({ delayMs: 1, jitterMs: -2 }), /jitterMs/);
  assert.throws(() => resolveProfile({ delayMs: 1, rateMbit: -5 }), /rateMbit/);
  assert.throws(
    () => resolveProfile({ delayMs: 1, rateMbit: 1, queuePackets: 0 }),
    /queuePackets 0 must be an integer within 1\.\.65536/,
  );
  assert.throws(() => newDirection({ delayMs: 1, queuePackets: 2.5 }), RangeError);
});

Deno.test("link schedule: a partition drops everything until lifted, then the link is fresh", () => {
  const d = newDirection({ delayMs: 20, rateMbit: 1, queuePackets: 2 });
  offer(d, 0, MTU, never);
  offer(d, 0, MTU, never);
  assert.deepEqual(offer(d, 0, MTU, never), { drop: "queue" });
  setPartitioned(d, true);
  assert.deepEqual(offer(d, 1, MTU, never), { drop: "partition" });
  assert.equal(d.held, 0);
  setPartitioned(d, false);
  // The queue was emptied with the cable: the next packet is serialised at once.
  assert.equal(at(offer(d, 2, MTU, never)), 2 + 12 + 20);
});

Deno.test("link schedule: setProfile applies to later packets only", () => {
  const d = newDirection({ delayMs: 20 });
  assert.equal(at(offer(d, 0, MTU, never)), 20);
  setProfile(d, { delayMs: 50, lossPct: 100 });
  assert.deepEqual(offer(d, 1, MTU, never), { drop: "loss" });
  setProfile(d, { delayMs: 50 });
  assert.equal(at(offer(d, 2, MTU, never)), 52);
  assert.throws(() => setProfile(d, { delayMs: -3 }), RangeError);
  assert.equal(at(offer(d, 3, MTU, never)), 53, "a refused profile leaves the old one");
});

Deno.test("link schedule: held packets are bounded whatever the profile", () => {
  const d = newDirection({ delayMs: 1000 });
  for (let i = 0; i < HELD_PACKETS_MAX; i++) assert.ok("deliverAt" in offer(d, 0, 60, never));
  assert.deepEqual(offer(d, 0, 60, never), { drop: "held" });
  delivered(d);
  assert.ok("deliverAt" in offer(d, 0, 60, never));
});

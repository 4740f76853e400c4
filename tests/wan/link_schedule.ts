/**
 * What one direction of an emulated WAN link does with each packet, without I/O: the
 * forwarder (forwarder.ts) reads a packet, asks `offer` when (or whether) it leaves the far
 * end, keeps it until then and writes it out. Time (`now`, ms) and the random source are
 * inputs, so delay, rate, queue drops and loss are unit tests with a fake clock.
 *
 * The model, per direction: a packet is lost at random (lossPct), else it joins a tail-drop
 * queue in front of a serialiser running at rateMbit (dropped if the queue is full), leaves
 * the serialiser when its last bit is out, and arrives delayMs (± jitterMs) later. Without
 * jitter, arrival order is sending order; jitter may reorder, as on a real path that does.
 */

export interface LinkProfile {
  /** One-way delay added to every packet, ms. */
  delayMs: number;
  /** Each packet's delay is delayMs ± up to jitterMs (uniform); 0 keeps packets in order. */
  jitterMs?: number;
  /** Fraction of packets dropped at random, percent (0..100). */
  lossPct?: number;
  /** Serialisation rate, Mbit/s; 0 or absent means unlimited (no queue builds). */
  rateMbit?: number;
  /** Tail-drop queue length in packets; default 2 × BDP (see defaultQueuePackets). */
  queuePackets?: number;
}

/** Why a packet did not make it; counted by the forwarder, reported by stats(). */
export type DropReason = "loss" | "queue" | "partition" | "held";

export type Verdict = { deliverAt: number } | { drop: DropReason };

export interface DirectionState {
  profile: Required<LinkProfile>;
  /** When the serialiser finishes the last admitted packet (ms). */
  busyUntil: number;
  /** Serialisation end times of admitted packets; those from queueHead on are still queued. */
  queue: number[];
  queueHead: number;
  /** Packets admitted and not yet delivered (queue + wire), for the HELD_PACKETS_MAX bound. */
  held: number;
  /** Everything offered is dropped (a cut cable), including what is already on the wire. */
  partitioned: boolean;
}

/** Bytes per packet used to turn a BDP in bytes into packets: a full Ethernet MTU. */
export const MTU_BYTES = 1500;
/**
 * Smallest default queue: with a tiny BDP (loopback-like delay) 2 × BDP would be a few
 * packets and a single TCP burst (10 segments initial window, plus ACKs) would overflow it.
 */
export const MIN_QUEUE_PACKETS = 64;
/**
 * Bound on packets held per direction (queue plus wire), whatever the profile: with an
 * unlimited rate nothing else limits the wire. 65,536 × 1500 B ≈ 98 MiB, far above any
 * profile's need (100 Mbit/s × 100 ms one-way ≈ 830 packets).
 */
export const HELD_PACKETS_MAX = 65_536;

/** Departed entries are cut from the queue array in batches, not one shift per packet. */
const _COMPACT_AFTER = 1024;

/** 2 × bandwidth-delay product in MTU packets, RTT taken as twice the one-way delay. */
export function defaultQueuePackets(p: LinkProfile): number {
  const rate = p.rateMbit ?? 0;
  if (rate <= 0) return HELD_PACKETS_MAX;
  const bdpBytes = (rate * 1e6 / 8) * (2 * p.delayMs / 1000);
  return Math.max(MIN_QUEUE_PACKETS, Math.ceil(2 * bdpBytes / MTU_BYTES));
}

/** Fills defaults and refuses nonsense with a RangeError naming the field. */
export function resolveProfile(p: LinkProfile): Required<LinkProfile> {
  const r: Required<LinkProfile> = {
    delayMs: p.delayMs,
    jitterMs: p.jitterMs ?? 0,
    lossPct: p.lossPct ?? 0,
    rateMbit: p.rateMbit ?? 0,
    queuePackets: p.queuePackets ?? defaultQueuePackets(p),
  };
  const check = (name: keyof LinkProfile, ok: boolean, want: string) => {
    if (!ok) throw new RangeError(`wan link profile: ${name} ${r[name]} must be ${want}`);
  };
  check("delayMs", Number.isFinite(r.delayMs) && r.delayMs >= 0, "a number ≥ 0");
  check("jitterMs", Number.isFinite(r.jitterMs) && r.jitterMs >= 0, "a number ≥ 0");
  check("lossPct", r.lossPct >= 0 && r.lossPct <= 100, "within 0..100");
  check("rateMbit", Number.isFinite(r.rateMbit) && r.rateMbit >= 0, "a number ≥ 0 (0: unlimited)");
  check(
    "queuePackets",
    Number.isInteger(r.queuePackets) && r.queuePackets >= 1 &&
      r.queuePackets <= HELD_PACKETS_MAX,
    `an integer within 1..${HELD_PACKETS_MAX}`,
  );
  return r;
}

export function newDirection(profile: LinkProfile): DirectionState {
  return {
    profile: resolveProfile(profile),
    busyUntil: 0,
    queue: [],
    queueHead: 0,
    held: 0,
    partitioned: false,
  };
}

/** A new profile applies to packets offered from now on; what is queued keeps its times. */
export function setProfile(state: DirectionState, profile: LinkProfile): void {
  state.profile = resolveProfile(profile);
}

/**
 * Decides the fate of a packet of `size` bytes offered at `now` (ms). `random` returns
 * [0, 1) like Math.random; it is drawn once for loss and, with jitter, once for the delay.
 * An admitted packet counts as held until `delivered` is called for it.
 */
export function offer(
  state: DirectionState,
  now: number,
  size: number,
  random: () => number,
): Verdict {
  const p = state.profile;
  if (state.partitioned) return { drop: "partition" };
  if (p.lossPct > 0 && random() * 100 < p.lossPct) return { drop: "loss" };
  if (state.held >= HELD_PACKETS_MAX) return { drop: "held" };

  let txEnd = now;
  if (p.rateMbit > 0) {
    // Packets whose last bit is out have left the queue.
    const q = state.queue;
    while (state.queueHead < q.length && q[state.queueHead] <= now) state.queueHead++;
    if (state.queueHead > _COMPACT_AFTER) {
      q.splice(0, state.queueHead);
      state.queueHead = 0;
    }
    if (q.length - state.queueHead >= p.queuePackets) return { drop: "queue" };
    const start = Math.max(now, state.busyUntil);
    txEnd = start + (size * 8) / (p.rateMbit * 1000); // Mbit/s = bits per µs = 1000 bits/ms
    state.busyUntil = txEnd;
    q.push(txEnd);
  }
  let delay = p.delayMs;
  if (p.jitterMs > 0) delay = Math.max(0, delay + (random() * 2 - 1) * p.jitterMs);
  state.held++;
  return { deliverAt: txEnd + delay };
}

/**
 * A partition drops everything offered until it is lifted, and what was queued is gone too
 * (the forwarder also empties its delay line): a cut cable, not a pause.
 */
export function setPartitioned(state: DirectionState, on: boolean): void {
  state.partitioned = on;
  if (!on) return;
  state.queue = [];
  state.queueHead = 0;
  state.held = 0;
  state.busyUntil = 0;
}

/** Called when a held packet is written out (or discarded) at its delivery time. */
export function delivered(state: DirectionState): void {
  if (state.held > 0) state.held--;
}

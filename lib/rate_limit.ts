/**
 * Token buckets keyed by source (IP address, principal), for what an attacker can make us
 * do for free: new connections, auth attempts, log lines. Pure: time comes in as `now` (ms).
 *
 * The key map is bounded: past MAX_KEYS the least recently used key is forgotten. A flood
 * from many spoofed sources can at worst reset a key's bucket to full, never grow memory.
 */

export interface BucketOptions {
  /** Tokens added per second. */
  ratePerSecond: number;
  /** Bucket size: how many events may come at once after a quiet period. */
  burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
  /** Events refused since the last one allowed (for "N suppressed" log lines). */
  refused: number;
}

export class RateLimiter {
  /** 10k sources × ~100 bytes: about 1 MB at worst. */
  static readonly MAX_KEYS = 10_000;
  #buckets = new Map<string, Bucket>();

  constructor(readonly options: BucketOptions) {
    if (!(options.ratePerSecond > 0) || !(options.burst >= 1)) {
      throw new RangeError(
        `rate ${options.ratePerSecond}/s burst ${options.burst}: both must be > 0`,
      );
    }
  }

  /** Takes one token for `key`; returns false (and counts a refusal) if there is none. */
  take(key: string, now: number): boolean {
    const b = this.#refill(key, now);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return true;
    }
    b.refused++;
    return false;
  }

  /** Gives back a token taken for an event that turned out not to count (a correct
   * password, where only failures are limited); never above the burst. */
  refund(key: string, now: number): void {
    const b = this.#refill(key, now);
    b.tokens = Math.min(this.options.burst, b.tokens + 1);
  }

  /** Refusals counted for `key` since the last call (and resets the count). */
  drainRefused(key: string): number {
    const b = this.#buckets.get(key);
    if (!b) return 0;
    const n = b.refused;
    b.refused = 0;
    return n;
  }

  get size(): number {
    return this.#buckets.size;
  }

  #refill(key: string, now: number): Bucket {
    let b = this.#buckets.get(key);
    if (b) {
      this.#buckets.delete(key); // re-insert: Map order is our LRU order
      const elapsed = Math.max(0, now - b.at) / 1000;
      b.tokens = Math.min(this.options.burst, b.tokens + elapsed * this.options.ratePerSecond);
      b.at = now;
    } else {
      b = { tokens: this.options.burst, at: now, refused: 0 };
      if (this.#buckets.size >= RateLimiter.MAX_KEYS) {
        this.#buckets.delete(this.#buckets.keys().next().value!);
      }
    }
    this.#buckets.set(key, b);
    return b;
  }
}

/** Counts of something per key with a cap, for "max tunnels per principal". */
export class Counter {
  #counts = new Map<string, number>();

  get(key: string): number {
    return this.#counts.get(key) ?? 0;
  }
  add(key: string, by: number): void {
    const n = this.get(key) + by;
    if (n <= 0) this.#counts.delete(key);
    else this.#counts.set(key, n);
  }
  get total(): number {
    let t = 0;
    for (const n of this.#counts.values()) t += n;
    return t;
  }
}

/** Events in the last `windowMs`, counted in `slots` buckets (e.g. auth failures in the
 * last hour, by minute). Memory is the slot array, whatever the event rate. */
export class WindowCount {
  #slots: number[];
  #slotMs: number;
  #head = 0; // slot index of the newest bucket
  #headStart = 0; // ms at which the head bucket started

  constructor(windowMs: number, slots = 60) {
    this.#slots = new Array(slots).fill(0);
    this.#slotMs = windowMs / slots;
  }

  add(now: number, n = 1): void {
    this.#advance(now);
    this.#slots[this.#head] += n;
  }

  total(now: number): number {
    this.#advance(now);
    return this.#slots.reduce((a, b) => a + b, 0);
  }

  #advance(now: number) {
    if (this.#headStart === 0) this.#headStart = now;
    const steps = Math.floor((now - this.#headStart) / this.#slotMs);
    if (steps <= 0) return;
    for (let i = 0; i < Math.min(steps, this.#slots.length); i++) {
      this.#head = (this.#head + 1) % this.#slots.length;
      this.#slots[this.#head] = 0;
    }
    this.#headStart += steps * this.#slotMs;
  }
}

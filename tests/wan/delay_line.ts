/**
 * Packets on the emulated wire, ordered by delivery time: a binary min-heap keyed by
 * (deliverAt, arrival sequence), so equal times keep sending order and, without jitter,
 * the line is plain FIFO. Pure: the forwarder pops what is due at its own `now`.
 */

interface _Entry<T> {
  at: number;
  seq: number;
  item: T;
}

export class DelayLine<T> {
  #heap: _Entry<T>[] = [];
  #seq = 0;

  get size(): number {
    return this.#heap.length;
  }

  /** Delivery time of the earliest packet, or undefined when the line is empty. */
  nextAt(): number | undefined {
    return this.#heap[0]?.at;
  }

  push(at: number, item: T): void {
    const h = this.#heap;
    h.push({ at, seq: this.#seq++, item });
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!_before(h[i], h[parent])) break;
      [h[i], h[parent]] = [h[parent], h[i]];
      i = parent;
    }
  }

  /** Removes and returns the earliest packet if it is due at `now`. */
  popDue(now: number): T | undefined {
    const h = this.#heap;
    if (h.length === 0 || h[0].at > now) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && _before(h[l], h[m])) m = l;
        if (r < h.length && _before(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top.item;
  }

  /** Empties the line (a partition cuts what is on the wire); returns how many were dropped. */
  clear(): number {
    const n = this.#heap.length;
    this.#heap = [];
    return n;
  }
}

function _before<T>(a: _Entry<T>, b: _Entry<T>): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

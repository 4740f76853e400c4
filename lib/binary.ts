/**
 * Big-endian field codec shared by the florete/1 messages (auth.ts, tunnel_header.ts).
 *
 * Messages travel as frames: a u16 length then the body, so a decoder always sees a whole
 * body and "ran out of bytes" simply means malformed.
 */

export class DecodeError extends Error {
  override name = "DecodeError";
}

export class ByteWriter {
  #parts: number[] = [];

  u8(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new RangeError(`value ${v} is not a u8`);
    this.#parts.push(v);
    return this;
  }
  u16(v: number): this {
    if (v < 0 || v > 0xffff) throw new RangeError(`value ${v} does not fit in u16`);
    return this.u8(v >> 8).u8(v & 0xff);
  }
  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new RangeError(`value ${v} does not fit in u32`);
    }
    return this.u16(Math.floor(v / 0x10000)).u16(v & 0xffff);
  }
  u64(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`value ${v} is not a u64`);
    const hi = Math.floor(v / 2 ** 32);
    return this.u16(hi >>> 16).u16(hi & 0xffff).u16((v >>> 16) & 0xffff).u16(v & 0xffff);
  }
  bytes(b: Uint8Array): this {
    for (const x of b) this.#parts.push(x);
    return this;
  }
  /** u8 length then bytes. */
  short(b: Uint8Array): this {
    if (b.length > 0xff) throw new RangeError(`field of ${b.length} bytes exceeds 255`);
    return this.u8(b.length).bytes(b);
  }
  /** u16 length then bytes. */
  long(b: Uint8Array): this {
    return this.u16(b.length).bytes(b);
  }
  text(s: string): this {
    return this.short(new TextEncoder().encode(s));
  }
  finish(): Uint8Array {
    return Uint8Array.from(this.#parts);
  }
}

export class ByteCursor {
  #pos = 0;
  constructor(private readonly buf: Uint8Array) {}

  #take(n: number): Uint8Array {
    if (this.#pos + n > this.buf.length) throw new DecodeError("message is truncated");
    const out = this.buf.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }
  u8(): number {
    return this.#take(1)[0];
  }
  u16(): number {
    const b = this.#take(2);
    return (b[0] << 8) | b[1];
  }
  u64(): number {
    const hi = this.u16() * 2 ** 16 + this.u16();
    const lo = this.u16() * 2 ** 16 + this.u16();
    const v = hi * 2 ** 32 + lo;
    if (!Number.isSafeInteger(v)) throw new DecodeError("u64 value out of range");
    return v;
  }
  bytes(n: number): Uint8Array {
    return this.#take(n);
  }
  short(): Uint8Array {
    return this.#take(this.u8());
  }
  long(): Uint8Array {
    return this.#take(this.u16());
  }
  text(): string {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(this.short());
    } catch (e) {
      if (e instanceof DecodeError) throw e;
      throw new DecodeError("text field is not UTF-8");
    }
  }
  end(): void {
    if (this.#pos !== this.buf.length) {
      throw new DecodeError(`${this.buf.length - this.#pos} unexpected trailing bytes`);
    }
  }
}

/** Frame = u16 body length + body. */
export const MAX_FRAME_BYTES = 0xffff;

export function frame(body: Uint8Array): Uint8Array {
  if (body.length > MAX_FRAME_BYTES) throw new RangeError(`frame body ${body.length} > 65535`);
  const out = new Uint8Array(2 + body.length);
  out[0] = body.length >> 8;
  out[1] = body.length & 0xff;
  out.set(body, 2);
  return out;
}

/** Cuts text to at most maxBytes of UTF-8 on a code point boundary (for u8-length fields
 * and log fields whose content a peer chose). */
export function truncateUtf8(text: string, maxBytes: number): string {
  const enc = new TextEncoder();
  if (enc.encode(text).length <= maxBytes) return text;
  let out = "";
  let used = 0;
  for (const ch of text) {
    const n = enc.encode(ch).length;
    if (used + n > maxBytes) break;
    out += ch;
    used += n;
  }
  return out;
}

/** Equality whose time depends only on the lengths, not on where the inputs differ (secrets:
 * passwords, tokens, derived keys). */
export function constantTimeEqual(a: string | Uint8Array, b: string | Uint8Array): boolean {
  const x = typeof a === "string" ? new TextEncoder().encode(a) : a;
  const y = typeof b === "string" ? new TextEncoder().encode(b) : b;
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

export function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

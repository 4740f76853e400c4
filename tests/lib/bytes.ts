/** Test helper (socks5, stream_buffer and relay tests, harness.ts readToEnd): one buffer of
 * `parts` in order, as a peer's writes arrive joined on the wire. */
export function concat(...parts: ArrayLike<number>[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

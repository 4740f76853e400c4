import assert from "node:assert/strict";
import fc from "fast-check";
import { Reply } from "../../lib/socks5.ts";
import {
  decodeStreamRequest,
  decodeTunnelReply,
  decodeTunnelRequest,
  encodeStatusRequest,
  encodeTunnelReply,
  encodeTunnelRequest,
  MAX_TUNNEL_REPLY_BYTES,
  MAX_TUNNEL_REQUEST_BYTES,
  socksReplyFor,
  TUNNEL_VERSION,
  TunnelHeaderError,
  TunnelStatus,
  tunnelStatusName,
} from "../../lib/tunnel_header.ts";

const ALL_STATUSES = Object.values(TunnelStatus);
const utf8 = (s: string) => new TextEncoder().encode(s).length;

function assertHeaderError(f: () => unknown, fragment?: RegExp): void {
  assert.throws(f, (e) => {
    assert.ok(e instanceof TunnelHeaderError, `${e} is not a TunnelHeaderError`);
    if (fragment) assert.match(e.message, fragment);
    return true;
  });
}

Deno.test("tunnel_header: request round trips and has the documented layout", () => {
  const bytes = encodeTunnelRequest({ service: "web", port: 443 });
  assert.deepEqual(bytes, Uint8Array.of(TUNNEL_VERSION, 1, 3, 0x77, 0x65, 0x62, 0x01, 0xbb));
  assert.deepEqual(decodeTunnelRequest(bytes), { service: "web", port: 443 });
  for (const r of [{ service: "a", port: 1 }, { service: "x".repeat(255), port: 65535 }]) {
    assert.deepEqual(decodeTunnelRequest(encodeTunnelRequest(r)), r);
  }
  assert.equal(
    encodeTunnelRequest({ service: "x".repeat(255), port: 1 }).length,
    MAX_TUNNEL_REQUEST_BYTES,
  );
});

Deno.test("tunnel_header: a status request is just version and kind", () => {
  assert.deepEqual(encodeStatusRequest(), Uint8Array.of(TUNNEL_VERSION, 2));
  assert.deepEqual(decodeStreamRequest(encodeStatusRequest()), { kind: "status" });
  assertHeaderError(() => decodeStreamRequest(Uint8Array.of(1, 2, 0)), /trailing/);
  assert.deepEqual(decodeStreamRequest(encodeTunnelRequest({ service: "web", port: 80 })), {
    kind: "connect",
    service: "web",
    port: 80,
  });
});

Deno.test("tunnel_header: reply round trips for every status", () => {
  for (const status of ALL_STATUSES) {
    const r = { status, message: `status ${tunnelStatusName(status)}` };
    assert.deepEqual(decodeTunnelReply(encodeTunnelReply(r)), r);
  }
  assert.deepEqual(
    encodeTunnelReply({ status: TunnelStatus.TARGET_REFUSED, message: "" }),
    Uint8Array.of(TUNNEL_VERSION, 4, 0),
  );
});

Deno.test("tunnel_header: requests and replies round trip (fast-check)", () => {
  // Any Unicode text that fits the 255-byte text field.
  const text = (minLength: number) =>
    fc.string({ minLength, maxLength: 60, unit: "grapheme" }).filter((s) => utf8(s) <= 255);
  fc.assert(
    fc.property(
      text(1),
      fc.integer({ min: 1, max: 65535 }),
      (service, port) => {
        assert.deepEqual(decodeTunnelRequest(encodeTunnelRequest({ service, port })), {
          service,
          port,
        });
      },
    ),
  );
  fc.assert(
    fc.property(
      fc.constantFrom(...ALL_STATUSES),
      text(0),
      (status, message) => {
        assert.deepEqual(decodeTunnelReply(encodeTunnelReply({ status, message })), {
          status,
          message,
        });
      },
    ),
  );
});

Deno.test("tunnel_header: request refusals", () => {
  const ok = encodeTunnelRequest({ service: "web", port: 80 });
  assertHeaderError(() => decodeTunnelRequest(new Uint8Array(0)), /truncated/);
  assertHeaderError(() => decodeTunnelRequest(Uint8Array.of(2, ...ok.subarray(1))), /version 2/);
  assertHeaderError(() => decodeTunnelRequest(Uint8Array.of(1, 1, 0, 0, 80)), /empty service/);
  assertHeaderError(() => decodeTunnelRequest(Uint8Array.of(1, 1, 1, 0x61, 0, 0)), /port 0/);
  assertHeaderError(() => decodeTunnelRequest(Uint8Array.of(...ok, 0)), /trailing/);
  assertHeaderError(() => decodeTunnelRequest(Uint8Array.of(1, 1, 1, 0xff, 0, 80)), /UTF-8/);
  assertHeaderError(() => decodeTunnelRequest(Uint8Array.of(1, 9)), /unknown request kind 9/);
  assertHeaderError(() => decodeTunnelRequest(encodeStatusRequest()), /expected a connect/);
  for (let n = 0; n < ok.length; n++) {
    assertHeaderError(() => decodeTunnelRequest(ok.subarray(0, n)));
  }
});

Deno.test("tunnel_header: reply refusals", () => {
  const ok = encodeTunnelReply({ status: TunnelStatus.OK, message: "ok" });
  assertHeaderError(() => decodeTunnelReply(Uint8Array.of(0, 0, 0)), /version 0/);
  assertHeaderError(() => decodeTunnelReply(Uint8Array.of(1, 9, 0)), /unknown status 9/);
  assertHeaderError(() => decodeTunnelReply(Uint8Array.of(1, 0xff, 0)), /unknown status 255/);
  assertHeaderError(() => decodeTunnelReply(Uint8Array.of(...ok, 1)), /trailing/);
  for (let n = 0; n < ok.length; n++) {
    assertHeaderError(() => decodeTunnelReply(ok.subarray(0, n)));
  }
});

Deno.test("tunnel_header: random bytes only ever raise TunnelHeaderError (fast-check)", () => {
  const onlyHeaderErrors = (decode: (b: Uint8Array) => unknown) => (b: Uint8Array) => {
    try {
      decode(b);
    } catch (e) {
      assert.ok(e instanceof TunnelHeaderError, `${e} for ${b}`);
    }
  };
  // Bytes that start like a header reach the field decoders more often than uniform noise.
  const bytes = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.uint8Array({ maxLength: 40 }).map((b) => Uint8Array.of(TUNNEL_VERSION, ...b)),
    fc.tuple(fc.nat({ max: 9 }), fc.uint8Array({ maxLength: 12 })).map(([s, b]) =>
      Uint8Array.of(TUNNEL_VERSION, s, b.length, ...b)
    ),
  );
  fc.assert(fc.property(bytes, onlyHeaderErrors(decodeTunnelRequest)), { numRuns: 2000 });
  fc.assert(fc.property(bytes, onlyHeaderErrors(decodeTunnelReply)), { numRuns: 2000 });
});

Deno.test("tunnel_header: socksReplyFor maps every status", () => {
  const expected: Record<keyof typeof TunnelStatus, number> = {
    OK: 0,
    NOT_ALLOWED: 2,
    WRONG_PORT: 2,
    UNKNOWN_SERVICE: 4,
    TARGET_UNREACHABLE: 4,
    TARGET_REFUSED: 5,
    TARGET_TIMEOUT: 6,
    OVER_CAPACITY: 1,
    INTERNAL: 1,
  };
  assert.deepEqual(Object.keys(expected).sort(), Object.keys(TunnelStatus).sort());
  for (const [name, code] of Object.entries(expected)) {
    const status = TunnelStatus[name as keyof typeof TunnelStatus];
    assert.equal(socksReplyFor(status), code, name);
  }
  assert.equal(socksReplyFor(TunnelStatus.TARGET_REFUSED), Reply.CONNECTION_REFUSED);
  assert.equal(socksReplyFor(TunnelStatus.TARGET_TIMEOUT), Reply.TTL_EXPIRED);
});

Deno.test("tunnel_header: tunnelStatusName is the lowercase constant name", () => {
  assert.deepEqual(ALL_STATUSES.map(tunnelStatusName), [
    "ok",
    "not_allowed",
    "unknown_service",
    "wrong_port",
    "target_refused",
    "target_unreachable",
    "target_timeout",
    "over_capacity",
    "internal",
  ]);
  assert.equal(tunnelStatusName(42 as TunnelStatus), "unknown");
});

Deno.test("tunnel_header: long messages are cut to 255 bytes", () => {
  const ascii = encodeTunnelReply({ status: TunnelStatus.INTERNAL, message: "x".repeat(1000) });
  assert.equal(ascii.length, MAX_TUNNEL_REPLY_BYTES);
  assert.equal(decodeTunnelReply(ascii).message, "x".repeat(255));
  // "é" is 2 bytes: 127 fit (254 bytes), half of the 128th must not be sent.
  const twoByte = decodeTunnelReply(
    encodeTunnelReply({ status: TunnelStatus.INTERNAL, message: "é".repeat(200) }),
  );
  assert.equal(twoByte.message, "é".repeat(127));
  // "€" is 3 bytes: 85 fit exactly.
  const threeByte = decodeTunnelReply(
    encodeTunnelReply({ status: TunnelStatus.INTERNAL, message: "€".repeat(100) }),
  );
  assert.equal(threeByte.message, "€".repeat(85));
});

// Regression: trimming UTF-16 units split an emoji, leaving U+FFFD on the wire.
Deno.test({
  name: "tunnel_header: long messages are cut on a code point boundary (astral characters)",
  fn: () => {
    for (const prefix of ["", "a", "ab", "abc"]) {
      const message = prefix + "😀".repeat(100);
      const got = decodeTunnelReply(
        encodeTunnelReply({ status: TunnelStatus.INTERNAL, message }),
      ).message;
      assert.ok(utf8(got) <= 255);
      assert.ok(message.startsWith(got), `${JSON.stringify(got.slice(-2))} is not a prefix`);
      assert.ok(!got.includes("\uFFFD"));
    }
  },
});

Deno.test("tunnel_header: any message is cut to a prefix of at most 255 bytes (fast-check)", () => {
  // Without astral characters: see the ignored test above for those.
  fc.assert(
    fc.property(
      fc.string({ maxLength: 400, unit: fc.constantFrom("a", "é", "€", "\u0000", "\n") }),
      (message) => {
        const got = decodeTunnelReply(
          encodeTunnelReply({ status: TunnelStatus.OK, message }),
        ).message;
        assert.ok(utf8(got) <= 255);
        assert.ok(message.startsWith(got));
        if (utf8(message) <= 255) assert.equal(got, message);
        else assert.ok(utf8(got) > 252, "cut no more than one character short");
      },
    ),
  );
});

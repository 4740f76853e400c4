import "reflect-metadata"; // before @peculiar/x509, as lib/pki.ts does
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  AUTH_CONTEXT,
  AUTH_VERSION,
  AuthError,
  type AuthErrorCode,
  buildAuthMessage,
  decodeAuthMessage,
  decodeAuthReply,
  encodeAuthMessage,
  encodeAuthReply,
  MAX_AUTH_MESSAGE_BYTES,
  NONCE_BYTES,
  NonceCache,
  signedBytes,
  type VerifyAuth,
  verifyAuthMessage,
} from "../../lib/auth.ts";
import { ByteWriter, toHex } from "../../lib/binary.ts";
import type { Principal } from "../../lib/identity.ts";
import {
  certificateDer,
  createCa,
  generateKeyPair,
  issueCertificate,
  normalizeSerial,
  type PkiErrorCode,
  SIGNING_ALGORITHM,
} from "../../lib/pki.ts";
import { AUTH_WINDOW_MS } from "../../lib/protocol.ts";

const T = Date.UTC(2030, 5, 1, 12);
const ALICE: Principal = { kind: "user", name: "alice" };
const N1_ID = "spiffe://acme/node/n1";
const N2_ID = "spiffe://acme/node/n2";

const ca = await createCa("acme", new Date(T));

async function issue(
  principal: Principal,
  o: { issuer?: typeof ca; cluster?: string; now?: number; days?: number } = {},
) {
  const issuer = o.issuer ?? ca;
  const keys = await generateKeyPair();
  const cert = await issueCertificate({
    ca: issuer.cert,
    caKey: issuer.keys.privateKey,
    cluster: o.cluster ?? "acme",
    principal,
    publicKey: keys.publicKey,
    now: new Date(o.now ?? T),
    days: o.days,
  });
  return { cert, keys };
}

const alice = await issue(ALICE);

/** A fixed nonce per call site keeps messages reproducible; `n` makes them distinct. */
function nonce(n: number): Uint8Array {
  return new Uint8Array(NONCE_BYTES).fill(n);
}

function build(o: Partial<Parameters<typeof buildAuthMessage>[0]> = {}): Promise<Uint8Array> {
  return buildAuthMessage({
    cert: alice.cert,
    key: alice.keys.privateKey,
    serverId: N1_ID,
    now: T,
    ...o,
  });
}

function verifier(o: Partial<VerifyAuth> = {}): VerifyAuth {
  return {
    ca: ca.cert,
    cluster: "acme",
    selfId: N1_ID,
    now: T,
    revoked: new Set(),
    nonces: new NonceCache(),
    ...o,
  };
}

function isAuthError(code: AuthErrorCode, pkiCode?: PkiErrorCode) {
  return (e: unknown) => {
    assert.ok(e instanceof AuthError, `${e} is not an AuthError`);
    assert.equal(e.code, code, e.message);
    if (pkiCode) assert.equal(e.pkiCode, pkiCode, e.message);
    return true;
  };
}

async function assertRefused(
  body: Uint8Array,
  v: VerifyAuth,
  code: AuthErrorCode,
  pkiCode?: PkiErrorCode,
): Promise<void> {
  await assert.rejects(verifyAuthMessage(body, v), isAuthError(code, pkiCode));
}

Deno.test("auth: build then verify returns the client's principal", async () => {
  const body = await build({ nonce: nonce(1) });
  const v = verifier();
  const who = await verifyAuthMessage(body, v);
  assert.deepEqual(who, {
    principal: ALICE,
    spiffe: "spiffe://acme/user/alice",
    serial: normalizeSerial(alice.cert.serialNumber),
    notAfter: alice.cert.notAfter,
    nonce: toHex(nonce(1)),
  });
  assert.equal(v.nonces.size, 1);
});

Deno.test("auth: a node and a gateway authenticate as clients too", async () => {
  for (const p of [{ kind: "node", name: "n2" }, { kind: "gateway", name: "office" }] as const) {
    const { cert, keys } = await issue(p);
    const who = await verifyAuthMessage(
      await buildAuthMessage({ cert, key: keys.privateKey, serverId: N1_ID, now: T }),
      verifier(),
    );
    assert.deepEqual(who.principal, p);
  }
});

Deno.test("auth: the message decodes to what was signed, with a random nonce by default", async () => {
  const m = decodeAuthMessage(await build());
  assert.deepEqual(m.chain, [certificateDer(alice.cert)]);
  assert.equal(m.serverId, N1_ID);
  assert.equal(m.timestamp, T);
  assert.equal(m.nonce.length, NONCE_BYTES);
  assert.notDeepEqual(m.nonce, decodeAuthMessage(await build()).nonce);
  const data = signedBytes(N1_ID, T, m.nonce);
  assert.deepEqual(data.subarray(0, AUTH_CONTEXT.length), new TextEncoder().encode(AUTH_CONTEXT));
  const key = await alice.cert.publicKey.export(
    { name: "ECDSA", namedCurve: "P-256" } as EcKeyImportParams,
    ["verify"],
  );
  assert.ok(
    await crypto.subtle.verify(
      SIGNING_ALGORITHM,
      key,
      m.signature as Uint8Array<ArrayBuffer>,
      data as Uint8Array<ArrayBuffer>,
    ),
  );
  assert.deepEqual(decodeAuthMessage(encodeAuthMessage(m)), m);
});

Deno.test("auth: a message signed for n2 presented to n1 is refused (wrong_server)", async () => {
  const body = await build({ serverId: N2_ID });
  await assertRefused(body, verifier(), "wrong_server");
  // ... while n2 itself accepts it.
  await verifyAuthMessage(body, verifier({ selfId: N2_ID }));
});

Deno.test("auth: timestamps more than 60 s off are refused (clock_skew), 59 s pass", async () => {
  const body = await build({ nonce: nonce(2) });
  await assertRefused(body, verifier({ now: T - 61_000 }), "clock_skew"); // message 61 s ahead
  await assertRefused(body, verifier({ now: T + 61_000 }), "clock_skew"); // 61 s behind
  await verifyAuthMessage(body, verifier({ now: T - 59_000 }));
  await verifyAuthMessage(body, verifier({ now: T + 59_000 }));
  await verifyAuthMessage(body, verifier({ now: T + AUTH_WINDOW_MS }));
  await verifyAuthMessage(body, verifier({ now: T - AUTH_WINDOW_MS }));
  await assertRefused(body, verifier({ now: T + AUTH_WINDOW_MS + 1 }), "clock_skew");
  await assert.rejects(
    verifyAuthMessage(body, verifier({ now: T + 61_000 })),
    (e: Error) => /61 s off/.test(e.message) && /NTP/.test(e.message),
  );
});

Deno.test("auth: a replayed message is refused (replay)", async () => {
  const nonces = new NonceCache();
  const body = await build({ nonce: nonce(3) });
  await verifyAuthMessage(body, verifier({ nonces }));
  await assertRefused(body, verifier({ nonces }), "replay");
  await assertRefused(body, verifier({ nonces, now: T + 30_000 }), "replay");
  // A new signature over a new timestamp does not make the nonce fresh.
  const resigned = await build({ nonce: nonce(3), now: T + 30_000 });
  await assertRefused(resigned, verifier({ nonces, now: T + 30_000 }), "replay");
  // A different nonce from the same client is fine.
  await verifyAuthMessage(await build({ nonce: nonce(4) }), verifier({ nonces }));
});

Deno.test("auth: a nonce is accepted again only after the freshness window", async () => {
  const nonces = new NonceCache();
  await verifyAuthMessage(await build({ nonce: nonce(5) }), verifier({ nonces }));
  // At the very end of the window the first message is still acceptable, so still remembered.
  const edge = T + AUTH_WINDOW_MS;
  await assertRefused(
    await build({ nonce: nonce(5), now: edge }),
    verifier({ nonces, now: edge }),
    "replay",
  );
  // After the window the old message is refused by its age, and its nonce can be reused.
  const later = T + AUTH_WINDOW_MS + 1_000;
  await assertRefused(
    await build({ nonce: nonce(5) }),
    verifier({ nonces, now: later }),
    "clock_skew",
  );
  await verifyAuthMessage(
    await build({ nonce: nonce(5), now: later }),
    verifier({ nonces, now: later }),
  );
});

Deno.test("auth: a signature by another key than the certificate's is refused (bad_signature)", async () => {
  const mallory = await generateKeyPair();
  const v = verifier();
  await assertRefused(await build({ key: mallory.privateKey }), v, "bad_signature");
  assert.equal(v.nonces.size, 0, "refused messages do not use up their nonce");
});

Deno.test("auth: a signature is bound to every signed field and to the context", async () => {
  const m = decodeAuthMessage(await build({ nonce: nonce(6) }));
  const swaps = [
    { ...m, nonce: nonce(7) },
    { ...m, timestamp: T + 1 },
  ];
  for (const forged of swaps) {
    await assertRefused(encodeAuthMessage(forged), verifier(), "bad_signature");
  }
  // The same fields signed without the domain-separation context are not an auth message.
  const bare = new ByteWriter().long(new TextEncoder().encode(N1_ID)).u64(T).bytes(nonce(6))
    .finish();
  const sig = await crypto.subtle.sign(
    SIGNING_ALGORITHM,
    alice.keys.privateKey,
    bare as Uint8Array<ArrayBuffer>,
  );
  const noContext = encodeAuthMessage({ ...m, signature: new Uint8Array(sig) });
  await assertRefused(noContext, verifier(), "bad_signature");
  // Garbage and empty signatures never verify and never throw anything else.
  for (const signature of [new Uint8Array(0), new Uint8Array(64), new Uint8Array(255).fill(1)]) {
    await assertRefused(encodeAuthMessage({ ...m, signature }), verifier(), "bad_signature");
  }
});

Deno.test("auth: a certificate from another cluster's CA is refused (certificate/not_signed_by_ca)", async () => {
  const other = await createCa("other", new Date(T));
  const foreign = await issue(ALICE, { issuer: other, cluster: "other" });
  const body = await buildAuthMessage({
    cert: foreign.cert,
    key: foreign.keys.privateKey,
    serverId: N1_ID,
    now: T,
  });
  await assertRefused(body, verifier(), "certificate", "not_signed_by_ca");
  // Even one claiming this cluster's name.
  const impostor = await createCa("acme", new Date(T));
  const forged = await issue(ALICE, { issuer: impostor });
  await assertRefused(
    await buildAuthMessage({
      cert: forged.cert,
      key: forged.keys.privateKey,
      serverId: N1_ID,
      now: T,
    }),
    verifier(),
    "certificate",
    "not_signed_by_ca",
  );
});

Deno.test("auth: a certificate for another cluster by the same CA is refused (certificate/wrong_cluster)", async () => {
  const evil = await issue(ALICE, { cluster: "evil" });
  const body = await buildAuthMessage({
    cert: evil.cert,
    key: evil.keys.privateKey,
    serverId: N1_ID,
    now: T,
  });
  await assertRefused(body, verifier(), "certificate", "wrong_cluster");
});

Deno.test("auth: a revoked certificate is refused (certificate/revoked)", async () => {
  const body = await build();
  const revoked = new Set([normalizeSerial(alice.cert.serialNumber)]);
  const v = verifier({ revoked });
  await assertRefused(body, v, "certificate", "revoked");
  assert.equal(v.nonces.size, 0);
});

Deno.test("auth: an expired certificate is refused (certificate/expired)", async () => {
  const old = await issue(ALICE, { now: Date.UTC(2020, 0, 1), days: 30 });
  const body = await buildAuthMessage({
    cert: old.cert,
    key: old.keys.privateKey,
    serverId: N1_ID,
    now: T,
  });
  await assertRefused(body, verifier(), "certificate", "expired");
});

Deno.test("auth: a chain that is not one parseable certificate is refused", async () => {
  const m = decodeAuthMessage(await build());
  const der = certificateDer(alice.cert);
  await assertRefused(
    encodeAuthMessage({ ...m, chain: [der, certificateDer(ca.cert)] }),
    verifier(),
    "certificate",
    "malformed",
  );
  await assertRefused(
    encodeAuthMessage({ ...m, chain: [Uint8Array.of(0x30, 0x01, 0x00)] }),
    verifier(),
    "certificate",
    "malformed",
  );
  for (const chain of [[], [der, der, der]]) {
    assert.throws(
      () => decodeAuthMessage(encodeAuthMessage({ ...m, chain })),
      isAuthError("malformed"),
    );
  }
});

Deno.test("auth: every truncation of a valid message is malformed, nothing else", async () => {
  const body = await build();
  for (let n = 0; n < body.length; n++) {
    await assertRefused(body.subarray(0, n), verifier(), "malformed");
  }
});

/** Verifies `body` with each single bit flipped at `positions`; returns outcome → count, where
 * an outcome is the refusal code, or a "byte i bit b ..." string for anything but a refusal. */
async function flipOutcomes(body: Uint8Array, positions: number[]): Promise<Map<string, number>> {
  const outcomes = new Map<string, number>();
  for (const i of positions) {
    for (let bit = 0; bit < 8; bit++) {
      const flipped = body.slice();
      flipped[i] ^= 1 << bit;
      // A fresh cache each time, so a refusal is never just the nonce having been seen.
      const outcome = await verifyAuthMessage(flipped, verifier()).then(
        () => `byte ${i} bit ${bit} verified`,
        (e) => e instanceof AuthError ? e.pkiCode ?? e.code : `byte ${i} bit ${bit}: ${e}`,
      );
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
  }
  return outcomes;
}

function assertAllRefused(outcomes: Map<string, number>, expectedCodes: string[]): void {
  const unexpected = [...outcomes.keys()].filter((k) => k.startsWith("byte "));
  assert.deepEqual(unexpected, [], "every flip ends in an AuthError");
  // Sanity: the flips reached every layer of the check.
  for (const code of expectedCodes) {
    assert.ok(outcomes.has(code), `no flip produced ${code}: ${[...outcomes.keys()]}`);
  }
}

/** Where the leaf's DER sits in an auth message, and where its signed part (TBS) ends. */
function certificateLayout(body: Uint8Array) {
  const start = 4; // version, count, u16 length
  const der = certificateDer(alice.cert);
  assert.deepEqual(body.subarray(start, start + der.length), der);
  // SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm, signatureValue }, long-form lengths.
  assert.deepEqual([der[0], der[1], der[4], der[5]], [0x30, 0x82, 0x30, 0x82]);
  const tbsEnd = start + 4 + 4 + ((der[6] << 8) | der[7]);
  return { start, tbsEnd, end: start + der.length };
}

Deno.test("auth: a bit flip in the signed fields or the certificate's signed part never verifies", async () => {
  const body = await build({ nonce: nonce(8) });
  await verifyAuthMessage(body, verifier());
  const { start, tbsEnd, end } = certificateLayout(body);
  // Everything but the certificate's unsigned envelope (see the ignored test below); the last
  // 30 bytes are the inside of the CA signature's s value.
  const positions = Array.from({ length: body.length }, (_, i) => i)
    .filter((i) => i < start || (i >= start + 4 && i < tbsEnd) || (i >= end - 30));
  assertAllRefused(await flipOutcomes(body, positions), [
    "malformed",
    "bad_version",
    "wrong_server",
    "bad_signature",
    "not_signed_by_ca",
  ]);
});

// Regression: the parser accepted non-DER encodings of a valid certificate (the unsigned
// envelope and the ECDSA signature header); parseCertificate now requires canonical DER.
Deno.test({
  name: "auth: a bit flip anywhere in a valid message never verifies",
  fn: async () => {
    const body = await build({ nonce: nonce(8) });
    await verifyAuthMessage(body, verifier());
    const { start, tbsEnd, end } = certificateLayout(body);
    const envelope = Array.from({ length: body.length }, (_, i) => i)
      .filter((i) => (i >= start && i < start + 4) || (i >= tbsEnd && i < end - 30));
    assertAllRefused(await flipOutcomes(body, envelope), []);
  },
});

Deno.test("auth: random bytes only ever raise AuthError (fast-check)", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }),
        fc.uint8Array({ maxLength: 200 }).map((b) => Uint8Array.of(AUTH_VERSION, 1, ...b)),
      ),
      (b) => {
        try {
          decodeAuthMessage(b);
        } catch (e) {
          assert.ok(e instanceof AuthError, String(e));
        }
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test("auth: an oversize message is refused before parsing (malformed)", async () => {
  const body = await build();
  const padded = new Uint8Array(MAX_AUTH_MESSAGE_BYTES + 1);
  padded.set(body);
  await assert.rejects(
    verifyAuthMessage(padded, verifier()),
    (e) => isAuthError("malformed")(e) && /exceeds 8192/.test((e as Error).message),
  );
  // At the limit the message is parsed (and here refused for its trailing bytes).
  await assertRefused(padded.subarray(0, MAX_AUTH_MESSAGE_BYTES), verifier(), "malformed");
  const m = decodeAuthMessage(body);
  assert.throws(
    () => encodeAuthMessage({ ...m, chain: [new Uint8Array(MAX_AUTH_MESSAGE_BYTES)] }),
    RangeError,
  );
});

Deno.test("auth: another protocol version is refused (bad_version)", async () => {
  const body = await build();
  for (const version of [0, 2, 0xff]) {
    const other = body.slice();
    other[0] = version;
    await assertRefused(other, verifier(), "bad_version");
  }
});

Deno.test("auth: a server id that is not UTF-8 is malformed", async () => {
  const m = decodeAuthMessage(await build());
  const w = new ByteWriter().u8(AUTH_VERSION).u8(1).long(m.chain[0]).long(Uint8Array.of(0xff))
    .u64(T).bytes(m.nonce).short(m.signature);
  await assertRefused(w.finish(), verifier(), "malformed");
});

Deno.test("auth: NonceCache remembers a nonce until its timestamp plus the window", () => {
  const c = new NonceCache();
  assert.equal(c.remember(nonce(1), T, T), true);
  assert.equal(c.remember(nonce(1), T, T), false);
  assert.equal(c.remember(nonce(1), T + 5_000, T + 5_000), false);
  assert.equal(c.remember(nonce(2), T, T), true);
  assert.equal(c.size, 2);
  assert.equal(c.remember(nonce(1), T, T + AUTH_WINDOW_MS), false, "still inside the window");
  assert.equal(c.remember(nonce(1), T + AUTH_WINDOW_MS + 1, T + AUTH_WINDOW_MS + 1), true);
  assert.equal(c.size, 1, "nonce 2 was forgotten, nonce 1 is remembered afresh");
});

Deno.test("auth: a full NonceCache refuses new nonces (busy), never forgetting early", () => {
  const c = new NonceCache();
  const n = new Uint8Array(NONCE_BYTES);
  const view = new DataView(n.buffer);
  for (let i = 0; i < NonceCache.MAX; i++) {
    view.setUint32(0, i);
    assert.equal(c.remember(n, T, T), true);
  }
  assert.equal(c.size, NonceCache.MAX);
  view.setUint32(0, NonceCache.MAX);
  assert.equal(c.remember(n, T, T + 1_000), "full");
  view.setUint32(0, 7);
  assert.equal(c.remember(n, T, T + 1_000), false, "a replay is still a replay when full");
  assert.equal(c.size, NonceCache.MAX);
  // Once the window has passed, the old nonces go and there is room again.
  view.setUint32(0, NonceCache.MAX);
  const later = T + AUTH_WINDOW_MS + 1;
  assert.equal(c.remember(n, later, later), true);
  assert.equal(c.size, 1);
});

Deno.test("auth: a valid message meeting a full NonceCache is refused (busy)", async () => {
  const nonces = new NonceCache();
  const n = new Uint8Array(NONCE_BYTES).fill(0xee);
  const view = new DataView(n.buffer);
  for (let i = 0; i < NonceCache.MAX; i++) {
    view.setUint32(0, i);
    nonces.remember(n, T, T);
  }
  await assertRefused(await build({ nonce: nonce(9) }), verifier({ nonces }), "busy");
});

Deno.test("auth: auth replies round trip", () => {
  assert.deepEqual(decodeAuthReply(encodeAuthReply(true)), { ok: true, reason: "" });
  assert.deepEqual(encodeAuthReply(true), Uint8Array.of(AUTH_VERSION, 0, 0));
  assert.deepEqual(decodeAuthReply(encodeAuthReply(false, "certificate expired")), {
    ok: false,
    reason: "certificate expired",
  });
  const long = decodeAuthReply(encodeAuthReply(false, "x".repeat(1000)));
  assert.equal(long.reason, "x".repeat(255)); // the u8-length field's limit
  assert.deepEqual(decodeAuthReply(encodeAuthReply(false, "é€ ok")).reason, "é€ ok");
});

Deno.test("auth: malformed auth replies are AuthError malformed", () => {
  const ok = encodeAuthReply(false, "no");
  const bad = [
    new Uint8Array(0),
    Uint8Array.of(2, 0, 0),
    Uint8Array.of(AUTH_VERSION, 0, 5, 0x61),
    Uint8Array.of(AUTH_VERSION, 1, 1, 0xff),
    Uint8Array.of(...ok, 0),
    ...Array.from({ length: ok.length }, (_, n) => ok.subarray(0, n)),
  ];
  for (const b of bad) assert.throws(() => decodeAuthReply(b), isAuthError("malformed"), `${b}`);
});

// Regression: reasons were cut to 200 UTF-16 units, not 255 bytes, and a peer-chosen
// server id quoted in a refusal made the encoder throw before the connection closed.
Deno.test({
  name: "auth: reply reasons of any text are cut to fit, never throw",
  fn: async () => {
    for (const reason of ["€".repeat(200), "é".repeat(150), "😀".repeat(100)]) {
      const got = decodeAuthReply(encodeAuthReply(false, reason));
      assert.ok(reason.startsWith(got.reason) && got.reason.length > 0);
    }
    const spoofed = await build({ serverId: "spiffe://acme/node/" + "é".repeat(150) });
    const e = await verifyAuthMessage(spoofed, verifier()).catch((e) => e);
    assert.ok(isAuthError("wrong_server")(e));
    assert.equal(decodeAuthReply(encodeAuthReply(false, e.message)).ok, false);
  },
});

import assert from "node:assert/strict";
import {
  generatePassword,
  hashPassword,
  PASSWORD_ITERATIONS,
  verifyPassword,
} from "../../lib/password_hash.ts";

const SALT = new TextEncoder().encode("0123456789abcdef");

Deno.test("password_hash: stored format and round trip", async () => {
  const stored = await hashPassword("correct horse");
  const [scheme, iterations, salt, hash, ...rest] = stored.split("$");
  assert.equal(scheme, "pbkdf2-sha256");
  assert.equal(iterations, String(PASSWORD_ITERATIONS));
  assert.equal(PASSWORD_ITERATIONS, 10_000);
  assert.equal(Uint8Array.fromBase64(salt).length, 16);
  assert.equal(Uint8Array.fromBase64(hash).length, 32);
  assert.deepEqual(rest, []);
  assert.equal(await verifyPassword("correct horse", stored), true);
});

Deno.test("password_hash: wrong passwords are refused", async () => {
  const stored = await hashPassword("correct horse");
  for (const wrong of ["correct horsE", "correct horse ", "correct hors", "", "x".repeat(1000)]) {
    assert.equal(await verifyPassword(wrong, stored), false, wrong);
  }
});

Deno.test("password_hash: matches PBKDF2-HMAC-SHA256 test vectors", async () => {
  // RFC 7914 section 11, P="passwd", S="salt", c=1 (first 32 bytes of the 64-byte output).
  const rfc = await hashPassword("passwd", {
    iterations: 1,
    salt: new TextEncoder().encode("salt"),
  });
  const want = Uint8Array.fromHex(
    "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc",
  );
  assert.equal(rfc, `pbkdf2-sha256$1$c2FsdA==$${want.toBase64()}`);
  assert.equal(await verifyPassword("passwd", rfc), true);
  // Computed independently with Python's hashlib.pbkdf2_hmac over the UTF-8 bytes.
  assert.equal(
    await hashPassword("p\u00e4ssw\u00f6rd\u{1F511}", { salt: SALT }),
    "pbkdf2-sha256$10000$MDEyMzQ1Njc4OWFiY2RlZg==$EUWooYRjnP9uZsnXugd6Rv8BHjqbxasrll+mbhXNe5c=",
  );
});

Deno.test("password_hash: different salts give different strings", async () => {
  const a = await hashPassword("same");
  const b = await hashPassword("same");
  assert.notEqual(a, b);
  assert.notEqual(a.split("$")[2], b.split("$")[2]);
  assert.equal(await verifyPassword("same", a), true);
  assert.equal(await verifyPassword("same", b), true);
  // Same salt, same string: the salt is the only randomness.
  assert.equal(
    await hashPassword("same", { salt: SALT }),
    await hashPassword("same", { salt: SALT }),
  );
});

Deno.test("password_hash: iteration count is stored and honoured", async () => {
  const stored = await hashPassword("pw", { iterations: 3, salt: SALT });
  assert.match(stored, /^pbkdf2-sha256\$3\$/);
  assert.equal(await verifyPassword("pw", stored), true);
  // The same salt and hash under another count no longer match.
  assert.equal(await verifyPassword("pw", stored.replace("$3$", "$4$")), false);
});

Deno.test("password_hash: hashPassword refuses out-of-range options", async () => {
  for (const iterations of [0, -1, 1.5, 10_000_001, NaN]) {
    await assert.rejects(hashPassword("pw", { iterations }), RangeError, String(iterations));
  }
  await assert.rejects(hashPassword("pw", { salt: new Uint8Array(0) }), /salt of 0 bytes/);
  await assert.rejects(hashPassword("pw", { salt: new Uint8Array(65) }), /salt of 65 bytes/);
});

Deno.test("password_hash: malformed stored strings are false, never a throw", async () => {
  const good = await hashPassword("pw", { salt: SALT });
  const [, , salt, hash] = good.split("$");
  assert.match(hash, /[/+]/); // so the URL-safe case below differs
  const malformed = [
    "",
    "pw",
    "$$$",
    `pbkdf2-sha1$10000$${salt}$${hash}`, // wrong scheme
    `PBKDF2-SHA256$10000$${salt}$${hash}`,
    `bcrypt$10000$${salt}$${hash}`,
    `pbkdf2-sha256$10000$${salt}`, // missing parts
    `pbkdf2-sha256$10000$${salt}$`,
    `pbkdf2-sha256$10000$$${hash}`,
    `pbkdf2-sha256$$${salt}$${hash}`,
    `pbkdf2-sha256$10000$${salt}$${hash}$extra`,
    `$10000$${salt}$${hash}`,
    `pbkdf2-sha256$0$${salt}$${hash}`, // iterations out of range or not plain decimal
    `pbkdf2-sha256$10000001$${salt}$${hash}`,
    `pbkdf2-sha256$99999999999999999999$${salt}$${hash}`,
    `pbkdf2-sha256$-1$${salt}$${hash}`,
    `pbkdf2-sha256$1e4$${salt}$${hash}`,
    `pbkdf2-sha256$010000$${salt}$${hash}`,
    `pbkdf2-sha256$ 10000$${salt}$${hash}`,
    `pbkdf2-sha256$0x2710$${salt}$${hash}`,
    `pbkdf2-sha256$10000$not base64!$${hash}`, // bad base64
    `pbkdf2-sha256$10000$${salt.replace(/=+$/, "")}$${hash}`, // padding missing
    `pbkdf2-sha256$10000$${salt}$${hash.replace(/=+$/, "")}`,
    `pbkdf2-sha256$10000$${salt.slice(0, 4)} ${salt.slice(4)}$${hash}`, // whitespace
    `pbkdf2-sha256$10000$${salt}$${hash.replaceAll("/", "_").replaceAll("+", "-")}`, // URL-safe alphabet
    `pbkdf2-sha256$10000$${salt}$${hash.slice(0, -2)}B=`, // non-zero padding bits
    `pbkdf2-sha256$10000$${salt}$${hash.slice(0, -4)}`, // key too short
    `pbkdf2-sha256$10000$${salt}$${hash.slice(0, -1)}AAAA`, // key too long
    `pbkdf2-sha256$10000$${"A".repeat(300)}$${hash}`, // oversized line
    ` ${good}`,
    `${good}\n`,
  ];
  for (const stored of malformed) {
    assert.equal(await verifyPassword("pw", stored), false, JSON.stringify(stored));
  }
  assert.equal(await verifyPassword("pw", good), true);
});

Deno.test("password_hash: unicode passwords round trip and are NFC-normalised", async () => {
  const passwords = ["p\u00e4ssw\u00f6rd", "\u{1F511}\u{1F512}", "\u5bc6\u7801", "\u0000nul"];
  for (const pw of passwords) {
    const stored = await hashPassword(pw);
    assert.equal(await verifyPassword(pw, stored), true, pw);
    assert.equal(await verifyPassword(pw.slice(1), stored), false, pw);
  }
  // "é" precomposed (NFC) and as e + combining acute (NFD) are the same password.
  const composed = "caf\u00e9";
  const decomposed = "cafe\u0301";
  assert.equal(await verifyPassword(decomposed, await hashPassword(composed)), true);
  assert.equal(await verifyPassword(composed, await hashPassword(decomposed)), true);
  assert.equal(await verifyPassword("cafe", await hashPassword(composed)), false);
});

Deno.test("password_hash: generatePassword is 32 URL-safe chars and unique", async () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const pw = generatePassword();
    assert.match(pw, /^[A-Za-z0-9_-]{32}$/);
    assert.equal(Uint8Array.fromBase64(pw, { alphabet: "base64url" }).length, 24);
    seen.add(pw);
  }
  assert.equal(seen.size, 200);
  const pw = generatePassword();
  assert.equal(await verifyPassword(pw, await hashPassword(pw)), true);
});

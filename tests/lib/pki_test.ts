import "reflect-metadata"; // before @peculiar/x509, as lib/pki.ts does
import assert from "node:assert/strict";
import * as x509 from "@peculiar/x509";
import type { Principal } from "../../lib/identity.ts";
import {
  certificateDer,
  certificatePem,
  claimedIdentity,
  createCa,
  exportPrivateKeyPem,
  generateKeyPair,
  importPrivateKeyPem,
  issueCertificate,
  LIFETIME_DAYS,
  normalizeSerial,
  parseCertificate,
  PkiError,
  type PkiErrorCode,
  randomSerial,
  SIGNING_ALGORITHM,
  verifyLeaf,
  type VerifyOptions,
} from "../../lib/pki.ts";

const NOW = new Date("2030-06-01T12:00:00Z");
const DAY_MS = 86_400_000;
const BACKDATE_MS = 5 * 60_000;
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";

const ALICE: Principal = { kind: "user", name: "alice" };
const N1: Principal = { kind: "node", name: "n1" };

const ca = await createCa("acme", NOW);

async function issue(
  principal: Principal,
  opts: { cluster?: string; now?: Date; days?: number } = {},
) {
  const keys = await generateKeyPair();
  const cert = await issueCertificate({
    ca: ca.cert,
    caKey: ca.keys.privateKey,
    cluster: opts.cluster ?? "acme",
    principal,
    publicKey: keys.publicKey,
    now: opts.now ?? NOW,
    days: opts.days,
  });
  return { cert, keys };
}

const alice = await issue(ALICE);
const n1 = await issue(N1);

function verifyOpts(o: Partial<VerifyOptions> = {}): VerifyOptions {
  return { ca: ca.cert, cluster: "acme", now: NOW, revoked: new Set(), usage: "clientAuth", ...o };
}

async function assertRefused(
  leaf: x509.X509Certificate,
  code: PkiErrorCode,
  o: Partial<VerifyOptions> = {},
): Promise<void> {
  await assert.rejects(verifyLeaf(leaf, verifyOpts(o)), (e) => {
    assert.ok(e instanceof PkiError, `${e} is not a PkiError`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

/** A leaf signed by the acme CA with hand-picked extensions, to reach one check at a time. */
async function craft(extensions: x509.Extension[]): Promise<x509.X509Certificate> {
  const keys = await generateKeyPair();
  return await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: "CN=crafted, O=acme",
    issuer: ca.cert.subject,
    notBefore: new Date(NOW.getTime() - DAY_MS),
    notAfter: new Date(NOW.getTime() + DAY_MS),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions,
  });
}

const uriSan = (...uris: string[]) =>
  new x509.SubjectAlternativeNameExtension(uris.map((value) => ({ type: "url" as const, value })));
const clientEku = () => new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]);
const signingKu = () => new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true);

Deno.test("pki: createCa is a self-signed CA that can sign certificates", async () => {
  const c = ca.cert;
  assert.equal(c.subject, "CN=acme Florete CA, O=acme");
  assert.equal(c.issuer, c.subject);
  assert.ok(await c.verify({ publicKey: c.publicKey, signatureOnly: true }));
  const bc = c.getExtension(x509.BasicConstraintsExtension);
  assert.ok(bc?.ca, "basicConstraints ca");
  assert.ok(bc.critical, "basicConstraints is critical");
  const ku = c.getExtension(x509.KeyUsagesExtension);
  assert.ok(ku && ku.usages & x509.KeyUsageFlags.keyCertSign, "keyCertSign");
  assert.ok(ku.usages & x509.KeyUsageFlags.cRLSign, "cRLSign");
  assert.ok(!(ku.usages & x509.KeyUsageFlags.digitalSignature), "a CA key signs only certs");
  assert.ok(c.getExtension(x509.SubjectKeyIdentifierExtension));
  assert.equal(c.notBefore.getTime(), NOW.getTime() - BACKDATE_MS);
  assert.equal(c.notAfter.getTime(), NOW.getTime() + LIFETIME_DAYS.ca * DAY_MS);
  assert.equal(claimedIdentity(c), undefined, "a CA carries no identity");
  const short = await createCa("acme", NOW, 10);
  assert.equal(short.cert.notAfter.getTime(), NOW.getTime() + 10 * DAY_MS);
});

Deno.test("pki: a node certificate has its DNS name, URI SAN, and both EKUs", () => {
  const c = n1.cert;
  const names = c.getExtension(x509.SubjectAlternativeNameExtension)!.names.items;
  assert.deepEqual(
    names.map((n) => [n.type, n.value]).sort(),
    [["dns", "n1.node.acme.internal"], ["url", "spiffe://acme/node/n1"]],
  );
  const eku = c.getExtension(x509.ExtendedKeyUsageExtension)!.usages;
  assert.deepEqual([...eku].sort(), [SERVER_AUTH, CLIENT_AUTH].sort());
  assert.equal(c.getExtension(x509.BasicConstraintsExtension)?.ca, false);
  assert.equal(
    c.getExtension(x509.KeyUsagesExtension)?.usages,
    x509.KeyUsageFlags.digitalSignature,
  );
  assert.equal(c.issuer, ca.cert.subject);
  assert.equal(c.subject, "CN=node:n1, O=acme");
  assert.equal(c.notAfter.getTime(), NOW.getTime() + LIFETIME_DAYS.node * DAY_MS);
});

Deno.test("pki: a user certificate has only its URI SAN and clientAuth", () => {
  const c = alice.cert;
  const names = c.getExtension(x509.SubjectAlternativeNameExtension)!.names.items;
  assert.deepEqual(names.map((n) => [n.type, n.value]), [["url", "spiffe://acme/user/alice"]]);
  assert.deepEqual([...c.getExtension(x509.ExtendedKeyUsageExtension)!.usages], [CLIENT_AUTH]);
  assert.equal(c.notAfter.getTime(), NOW.getTime() + LIFETIME_DAYS.user * DAY_MS);
  assert.equal(c.notBefore.getTime(), NOW.getTime() - BACKDATE_MS);
  assert.deepEqual(claimedIdentity(c), {
    cluster: "acme",
    principal: ALICE,
    spiffe: "spiffe://acme/user/alice",
  });
});

Deno.test("pki: issueCertificate honours days and certifies the given public key", async () => {
  const { cert, keys } = await issue({ kind: "service", name: "web" }, { days: 2 });
  assert.equal(cert.notAfter.getTime(), NOW.getTime() + 2 * DAY_MS);
  const data = new TextEncoder().encode("proof");
  const sig = await crypto.subtle.sign(SIGNING_ALGORITHM, keys.privateKey, data);
  const key = await cert.publicKey.export(
    { name: "ECDSA", namedCurve: "P-256" } as EcKeyImportParams,
    ["verify"],
  );
  assert.ok(await crypto.subtle.verify(SIGNING_ALGORITHM, key, sig, data));
});

Deno.test("pki: verifyLeaf accepts good leaves and returns what they prove", async () => {
  const id = await verifyLeaf(alice.cert, verifyOpts());
  assert.deepEqual(id, {
    principal: ALICE,
    spiffe: "spiffe://acme/user/alice",
    serial: normalizeSerial(alice.cert.serialNumber),
    notAfter: alice.cert.notAfter,
  });
  assert.match(id.serial, /^[0-9a-f]+$/);
  const node = await verifyLeaf(n1.cert, verifyOpts({ usage: "serverAuth" }));
  assert.deepEqual(node.principal, N1);
  assert.deepEqual((await verifyLeaf(n1.cert, verifyOpts())).principal, N1);
  const gw = await issue({ kind: "gateway", name: "office" });
  assert.deepEqual((await verifyLeaf(gw.cert, verifyOpts())).principal.kind, "gateway");
});

Deno.test("pki: verifyLeaf accepts at both ends of the validity period", async () => {
  const start = new Date(NOW.getTime() - BACKDATE_MS);
  await verifyLeaf(alice.cert, verifyOpts({ now: start }));
  await verifyLeaf(alice.cert, verifyOpts({ now: alice.cert.notAfter }));
  await assertRefused(alice.cert, "not_yet_valid", { now: new Date(start.getTime() - 1000) });
  await assertRefused(alice.cert, "expired", {
    now: new Date(alice.cert.notAfter.getTime() + 1000),
  });
});

Deno.test("pki: verifyLeaf refuses a leaf of another CA (not_signed_by_ca)", async () => {
  const other = await createCa("other", NOW);
  await assertRefused(alice.cert, "not_signed_by_ca", { ca: other.cert, cluster: "other" });
  // Same name, different key: the issuer name matches, only the signature tells them apart.
  const impostor = await createCa("acme", NOW);
  assert.equal(impostor.cert.subject, ca.cert.subject);
  await assertRefused(alice.cert, "not_signed_by_ca", { ca: impostor.cert });
  const forged = await issueCertificate({
    ca: impostor.cert,
    caKey: impostor.keys.privateKey,
    cluster: "acme",
    principal: ALICE,
    publicKey: alice.keys.publicKey,
    now: NOW,
  });
  await assertRefused(forged, "not_signed_by_ca");
});

Deno.test("pki: verifyLeaf checks the signature before anything a forger controls", async () => {
  const impostor = await createCa("acme", NOW);
  const keys = await generateKeyPair();
  const forged = await issueCertificate({
    ca: impostor.cert,
    caKey: impostor.keys.privateKey,
    cluster: "evil",
    principal: ALICE,
    publicKey: keys.publicKey,
    now: new Date("1990-01-01T00:00:00Z"),
    days: 1,
  });
  // Expired, wrong cluster and revoked, but the reported reason is the missing signature.
  await assertRefused(forged, "not_signed_by_ca", {
    revoked: new Set([normalizeSerial(forged.serialNumber)]),
  });
});

Deno.test("pki: verifyLeaf refuses an expired leaf", async () => {
  await assertRefused(alice.cert, "expired", { now: new Date("2100-01-01T00:00:00Z") });
  const old = await issue(ALICE, { now: new Date("2020-01-01T00:00:00Z"), days: 30 });
  await assertRefused(old.cert, "expired");
});

Deno.test("pki: verifyLeaf refuses a leaf that is not yet valid", async () => {
  await assertRefused(alice.cert, "not_yet_valid", { now: new Date("2000-01-01T00:00:00Z") });
  const future = await issue(ALICE, { now: new Date("2031-01-01T00:00:00Z") });
  await assertRefused(future.cert, "not_yet_valid");
});

Deno.test("pki: verifyLeaf refuses a CA certificate used as a leaf (is_ca)", async () => {
  await assertRefused(ca.cert, "is_ca");
  // A CA-flagged cert that is otherwise a perfect client cert of alice.
  const subCa = await craft([
    new x509.BasicConstraintsExtension(true, undefined, true),
    signingKu(),
    clientEku(),
    uriSan("spiffe://acme/user/alice"),
  ]);
  await assertRefused(subCa, "is_ca");
});

Deno.test("pki: verifyLeaf refuses a leaf without the wanted key usage (bad_key_usage)", async () => {
  // A user certificate is not a server certificate.
  await assertRefused(alice.cert, "bad_key_usage", { usage: "serverAuth" });
  const san = uriSan("spiffe://acme/user/alice");
  const serverOnly = await craft([
    signingKu(),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    san,
  ]);
  await assertRefused(serverOnly, "bad_key_usage");
  const noEku = await craft([signingKu(), san]);
  await assertRefused(noEku, "bad_key_usage");
  const noKu = await craft([clientEku(), san]);
  await assertRefused(noKu, "bad_key_usage");
  const wrongKu = await craft([
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyEncipherment, true),
    clientEku(),
    san,
  ]);
  await assertRefused(wrongKu, "bad_key_usage");
  // The same extensions with digitalSignature pass: the crafted leaves differ in one thing.
  await verifyLeaf(await craft([signingKu(), clientEku(), san]), verifyOpts());
});

Deno.test("pki: verifyLeaf refuses a leaf without exactly one spiffe identity (bad_identity)", async () => {
  const base = [signingKu(), clientEku()];
  await assertRefused(await craft(base), "bad_identity");
  await assertRefused(
    await craft([...base, uriSan("spiffe://acme/user/alice", "spiffe://acme/user/bob")]),
    "bad_identity",
  );
  await assertRefused(await craft([...base, uriSan("https://acme.example/alice")]), "bad_identity");
  await assertRefused(await craft([...base, uriSan("spiffe://acme/root/alice")]), "bad_identity");
  const dnsOnly = new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "alice" }]);
  await assertRefused(await craft([...base, dnsOnly]), "bad_identity");
});

Deno.test("pki: verifyLeaf refuses a leaf of another cluster by the same CA (wrong_cluster)", async () => {
  const evil = await issue(ALICE, { cluster: "evil" });
  await assertRefused(evil.cert, "wrong_cluster");
  const evilNode = await issue(N1, { cluster: "evil" });
  await assertRefused(evilNode.cert, "wrong_cluster", { usage: "serverAuth" });
});

Deno.test("pki: verifyLeaf refuses a revoked serial in any spelling cluster.yaml normalises to", async () => {
  const serial = normalizeSerial(alice.cert.serialNumber);
  await assertRefused(alice.cert, "revoked", { revoked: new Set([serial]) });
  await assertRefused(alice.cert, "revoked", {
    revoked: new Set(["abc", normalizeSerial(`00${serial.toUpperCase()}`)]),
  });
  // Another serial does not touch alice.
  await verifyLeaf(
    alice.cert,
    verifyOpts({ revoked: new Set([normalizeSerial(n1.cert.serialNumber)]) }),
  );
});

Deno.test("pki: private key PEM round trip signs for the same public key", async () => {
  const pem = await exportPrivateKeyPem(alice.keys.privateKey);
  assert.match(
    pem,
    /^-----BEGIN PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END PRIVATE KEY-----\n$/,
  );
  const key = await importPrivateKeyPem(pem);
  assert.equal(key.type, "private");
  assert.deepEqual(key.usages, ["sign"]);
  const data = new TextEncoder().encode("florete");
  const sig = await crypto.subtle.sign(SIGNING_ALGORITHM, key, data);
  assert.ok(await crypto.subtle.verify(SIGNING_ALGORITHM, alice.keys.publicKey, sig, data));
  assert.equal(await exportPrivateKeyPem(key), pem);
});

Deno.test("pki: importPrivateKeyPem refuses what is not a P-256 PKCS#8 key (malformed)", async () => {
  const ed =
    (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign"])) as CryptoKeyPair;
  const edPem = x509.PemConverter.encode(
    await crypto.subtle.exportKey("pkcs8", ed.privateKey),
    "PRIVATE KEY",
  );
  const bad = [
    "garbage",
    "",
    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    certificatePem(alice.cert),
    edPem,
  ];
  for (const pem of bad) {
    // Awaited inside: the refusal may come synchronously or as a rejection.
    await assert.rejects(
      async () => await importPrivateKeyPem(pem),
      (e) => e instanceof PkiError && e.code === "malformed",
      JSON.stringify(pem.slice(0, 30)),
    );
  }
});

Deno.test("pki: certificates round trip through PEM and DER", () => {
  const pem = certificatePem(alice.cert);
  assert.match(pem, /^-----BEGIN CERTIFICATE-----\r?\n[\s\S]+-----END CERTIFICATE-----\n$/);
  const fromPem = parseCertificate(pem);
  const fromDer = parseCertificate(certificateDer(alice.cert));
  for (const c of [fromPem, fromDer]) {
    assert.equal(c.serialNumber, alice.cert.serialNumber);
    assert.deepEqual(certificateDer(c), certificateDer(alice.cert));
  }
});

Deno.test("pki: parseCertificate refuses garbage (malformed)", () => {
  for (const input of ["garbage", "", Uint8Array.of(0x30, 0x03, 1, 2), new Uint8Array(0)]) {
    assert.throws(
      () => parseCertificate(input),
      (e) => e instanceof PkiError && e.code === "malformed",
    );
  }
});

Deno.test("pki: randomSerial is 32 lowercase hex digits of a positive, stable integer", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 500; i++) {
    const s = randomSerial();
    assert.match(s, /^[0-9a-f]{32}$/);
    assert.ok(parseInt(s.slice(0, 2), 16) < 0x80, `${s}: the sign bit is clear`);
    assert.notEqual(s.slice(0, 2), "00", `${s}: 16 significant bytes`);
    assert.equal(normalizeSerial(s), s);
    seen.add(s);
  }
  assert.equal(seen.size, 500);
});

Deno.test("pki: the serial of an issued certificate reads back as issued", () => {
  const serial = normalizeSerial(alice.cert.serialNumber);
  assert.match(serial, /^[0-9a-f]{32}$/);
  assert.notEqual(serial, normalizeSerial(n1.cert.serialNumber));
});

Deno.test("pki: normalizeSerial lowercases and drops leading zeros", () => {
  assert.equal(normalizeSerial("3FA2C4"), "3fa2c4");
  assert.equal(normalizeSerial("003FA2C4"), "3fa2c4");
  assert.equal(normalizeSerial("00003fa2c4"), "3fa2c4");
  // Issue 11 item 6: a serial is a number; a tool that pads to whole bytes writes 0a1b2c.
  assert.equal(normalizeSerial("0a1b2c"), normalizeSerial("a1b2c"));
  assert.equal(normalizeSerial("0A:1B:2C"), "a1b2c");
  assert.equal(normalizeSerial("000"), "0");
  assert.equal(normalizeSerial("7d00"), "7d00");
});

/**
 * The cluster's certificates: one CA per cluster, one leaf per principal.
 *
 * Keys are ECDSA P-256 (WebCrypto), certificates X.509 v3 made with @peculiar/x509.
 * Pure apart from the crypto: time comes in as `now`, nothing touches files or sockets.
 * Chains are exactly [leaf] signed by the CA: no intermediates, so the verification below
 * is the whole trust decision and stays small enough to read in one sitting.
 */
import "reflect-metadata"; // @peculiar/x509 2.x resolves its providers through tsyringe
import * as x509 from "@peculiar/x509";
import {
  nodeServerName,
  normalizeSerial,
  parseSpiffeId,
  type Principal,
  principalString,
  spiffeId,
} from "./identity.ts";

export { normalizeSerial };

export const KEY_ALGORITHM: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
export const SIGNING_ALGORITHM: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };

/** Default lifetimes, in days (the operate issue's rotate uses the same numbers). */
export const LIFETIME_DAYS = { ca: 3650, node: 365, service: 365, gateway: 365, user: 90 } as const;

/** Certificates are back-dated this much so a peer whose clock is slightly behind accepts them. */
const BACKDATE_MS = 5 * 60_000;
const DAY_MS = 86_400_000;

export type PkiErrorCode =
  | "malformed"
  | "not_signed_by_ca"
  | "not_yet_valid"
  | "expired"
  | "is_ca"
  | "bad_key_usage"
  | "bad_identity"
  | "wrong_cluster"
  | "revoked";

export class PkiError extends Error {
  override name = "PkiError";
  constructor(readonly code: PkiErrorCode, message: string) {
    super(message);
  }
}

export interface Issued {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

/** What a verified certificate tells us, and nothing else is trusted. */
export interface VerifiedIdentity {
  principal: Principal;
  spiffe: string;
  serial: string;
  notAfter: Date;
}

export function generateKeyPair(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(KEY_ALGORITHM, true, ["sign", "verify"]) as Promise<
    CryptoKeyPair
  >;
}

export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  const der = await crypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY") + "\n";
}

export function importPrivateKeyPem(pem: string): Promise<CryptoKey> {
  let der: ArrayBuffer;
  try {
    der = x509.PemConverter.decode(pem)[0];
  } catch {
    throw new PkiError("malformed", "not a PEM private key");
  }
  if (!der) throw new PkiError("malformed", "no PEM block in the private key file");
  return crypto.subtle.importKey("pkcs8", der, KEY_ALGORITHM, true, ["sign"]).catch(() => {
    throw new PkiError("malformed", "the private key is not an ECDSA P-256 PKCS#8 key");
  });
}

export function certificatePem(cert: x509.X509Certificate): string {
  return cert.toString("pem") + "\n";
}

export function parseCertificate(input: string | Uint8Array): x509.X509Certificate {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(
      typeof input === "string" ? input : (input as Uint8Array<ArrayBuffer>),
    );
  } catch (e) {
    throw new PkiError("malformed", `not an X.509 certificate (${(e as Error).message})`);
  }
  if (typeof input !== "string" && !isCanonical(cert, input)) {
    // The parser is lenient (BER lengths, slack in the unsigned outer wrapping). Bytes from a
    // peer must be the one DER encoding, so no two byte strings name the same certificate.
    throw new PkiError("malformed", "certificate is not in canonical DER");
  }
  return cert;
}

function isCanonical(cert: x509.X509Certificate, der: Uint8Array): boolean {
  try {
    const asn = (cert as unknown as { asn: x509.X509Certificate["asn"] }).asn;
    const again = new Uint8Array(new x509.X509Certificate(asn).rawData);
    return again.length === der.length && again.every((b, i) => b === der[i]) &&
      isDerEcdsaSignature(new Uint8Array(cert.signature));
  } catch {
    return false;
  }
}

/** ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } in strict DER. The library converts
 * it leniently (it ignores the SEQUENCE header), so the check is done here. */
function isDerEcdsaSignature(b: Uint8Array): boolean {
  if (b.length < 8 || b[0] !== 0x30 || b[1] !== b.length - 2 || b[1] > 0x7f) return false;
  let i = 2;
  for (let n = 0; n < 2; n++) {
    if (b[i] !== 0x02) return false;
    const len = b[i + 1];
    if (len < 1 || len > 33 || i + 2 + len > b.length) return false;
    const v = b.subarray(i + 2, i + 2 + len);
    if (v[0] & 0x80) return false; // negative
    if (len > 1 && v[0] === 0 && !(v[1] & 0x80)) return false; // non-minimal
    i += 2 + len;
  }
  return i === b.length;
}

export function certificateDer(cert: x509.X509Certificate): Uint8Array {
  return new Uint8Array(cert.rawData);
}

/** Positive 128-bit serial, lowercase hex (the form cluster.yaml's `revoked:` uses). */
export function randomSerial(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[0] &= 0x7f;
  // A first digit other than 0 keeps all 32 hex digits significant, so the written form is
  // already canonical (normalizeSerial drops leading zeros).
  if (b[0] < 0x10) b[0] |= 0x10;
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export async function createCa(cluster: string, now: Date, days: number = LIFETIME_DAYS.ca) {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${cluster} Florete CA, O=${cluster}`,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + days * DAY_MS),
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys } satisfies Issued;
}

export interface IssueRequest {
  ca: x509.X509Certificate;
  caKey: CryptoKey;
  cluster: string;
  principal: Principal;
  publicKey: CryptoKey;
  now: Date;
  days?: number;
}

/** Issues a leaf for one principal. Nodes also get the DNS name clients verify and
 * serverAuth; everyone gets clientAuth (the auth message proves possession of its key). */
export async function issueCertificate(req: IssueRequest): Promise<x509.X509Certificate> {
  const { principal, cluster } = req;
  const isNode = principal.kind === "node";
  const names: x509.JsonGeneralNames = [{ type: "url", value: spiffeId(cluster, principal) }];
  if (isNode) names.push({ type: "dns", value: nodeServerName(cluster, principal.name) });
  const days = req.days ?? LIFETIME_DAYS[principal.kind];
  // A leaf never outlives its CA: past that date no peer would accept it anyway.
  const notAfter = Math.min(req.now.getTime() + days * DAY_MS, req.ca.notAfter.getTime());
  return await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${principalString(principal)}, O=${cluster}`,
    issuer: req.ca.subject,
    notBefore: new Date(req.now.getTime() - BACKDATE_MS),
    notAfter: new Date(notAfter),
    publicKey: req.publicKey,
    signingKey: req.caKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(
        isNode
          ? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]
          : [x509.ExtendedKeyUsage.clientAuth],
      ),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.AuthorityKeyIdentifierExtension.create(req.ca),
    ],
  });
}

/** The SPIFFE identity a certificate claims (not yet verified). */
export function claimedIdentity(cert: x509.X509Certificate) {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const uris = san?.names.items.filter((n) => n.type === "url").map((n) => n.value) ?? [];
  if (uris.length !== 1) return undefined;
  const parsed = parseSpiffeId(uris[0]);
  return parsed ? { ...parsed, spiffe: uris[0] } : undefined;
}

export interface VerifyOptions {
  ca: x509.X509Certificate;
  cluster: string;
  now: Date;
  /** Lowercase hex serials from cluster.yaml's `revoked:`. */
  revoked: ReadonlySet<string>;
  /** Extended key usage the leaf must carry for this use. */
  usage: "clientAuth" | "serverAuth";
}

/** Verifies a leaf against the cluster CA and returns the identity it proves.
 * Order matters only for the error reported: the signature is checked first so that
 * nothing a forger controls (dates, names) is reported back as if it meant anything. */
export async function verifyLeaf(
  leaf: x509.X509Certificate,
  opts: VerifyOptions,
): Promise<VerifiedIdentity> {
  const signedByCa = leaf.issuer === opts.ca.subject &&
    await leaf.verify({ publicKey: opts.ca.publicKey, signatureOnly: true }).catch(() => false);
  if (!signedByCa) {
    throw new PkiError("not_signed_by_ca", "certificate is not signed by this cluster's CA");
  }
  const serial = normalizeSerial(leaf.serialNumber);
  if (opts.now < leaf.notBefore) {
    throw new PkiError("not_yet_valid", `certificate is valid only from ${iso(leaf.notBefore)}`);
  }
  if (opts.now > leaf.notAfter) {
    throw new PkiError("expired", `certificate expired at ${iso(leaf.notAfter)}`);
  }
  if (opts.now < opts.ca.notBefore) {
    throw new PkiError(
      "not_yet_valid",
      `the cluster CA is valid only from ${iso(opts.ca.notBefore)}`,
    );
  }
  if (opts.now > opts.ca.notAfter) {
    throw new PkiError("expired", `the cluster CA expired at ${iso(opts.ca.notAfter)}`);
  }
  if (leaf.getExtension(x509.BasicConstraintsExtension)?.ca) {
    throw new PkiError("is_ca", "a CA certificate cannot be used as an identity");
  }
  const ku = leaf.getExtension(x509.KeyUsagesExtension);
  const eku = leaf.getExtension(x509.ExtendedKeyUsageExtension);
  const wantedEku = x509.ExtendedKeyUsage[opts.usage];
  if (
    !ku || !(ku.usages & x509.KeyUsageFlags.digitalSignature) || !eku?.usages.includes(wantedEku)
  ) {
    throw new PkiError("bad_key_usage", `certificate is not issued for ${opts.usage}`);
  }
  const claimed = claimedIdentity(leaf);
  if (!claimed) {
    throw new PkiError("bad_identity", "certificate carries no single spiffe:// identity");
  }
  if (claimed.cluster !== opts.cluster) {
    throw new PkiError("wrong_cluster", `certificate belongs to cluster '${claimed.cluster}'`);
  }
  if (opts.revoked.has(serial)) {
    throw new PkiError(
      "revoked",
      `certificate ${serial} of ${principalString(claimed.principal)} is revoked`,
    );
  }
  return { principal: claimed.principal, spiffe: claimed.spiffe, serial, notAfter: leaf.notAfter };
}

function iso(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

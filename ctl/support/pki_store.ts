/**
 * The operator's `pki/` directory: the cluster CA and the certificate, key (and, for
 * services, SOCKS password) of every principal, issued on demand.
 *
 *   pki/ca.crt, pki/ca.key
 *   pki/<kind>/<name>.crt, pki/<kind>/<name>.key, pki/service/<name>.password
 *
 * Keys and passwords are written 0600 and never leave this directory except inside the one
 * bundle made for the machine that uses them.
 */
import type * as x509 from "@peculiar/x509";
import { join } from "node:path";
import YAML from "yaml";
import { type Principal, principalString } from "../../lib/identity.ts";
import { decodeMapSignature, encodeMapSignature, signClusterMap } from "../../lib/map_signature.ts";
import { sha256Hex } from "../../lib/sha256.ts";
import {
  certificatePem,
  createCa,
  exportPrivateKeyPem,
  generateKeyPair,
  importPrivateKeyPem,
  issueCertificate,
  normalizeSerial,
  parseCertificate,
} from "../../lib/pki.ts";
import { writeFileAtomic } from "./cluster_dir.ts";
import { CtlError } from "./ctl_error.ts";

export const KEY_MODE = 0o600;

export interface CaFiles {
  cert: x509.X509Certificate;
  certPem: string;
  key: CryptoKey;
}

export interface PrincipalFiles {
  principal: Principal;
  certPem: string;
  keyPem: string;
  cert: x509.X509Certificate;
  /** True when this call issued a new certificate. */
  issued: boolean;
}

export function pkiDir(dir: string): string {
  return join(dir, "pki");
}

function paths(dir: string, p: Principal) {
  const base = join(pkiDir(dir), p.kind, p.name);
  return { cert: `${base}.crt`, key: `${base}.key`, password: `${base}.password` };
}

export async function initCa(dir: string, cluster: string, now: Date): Promise<void> {
  await Deno.mkdir(pkiDir(dir), { recursive: true, mode: 0o700 });
  const { cert, keys } = await createCa(cluster, now);
  await writeFileAtomic(
    join(pkiDir(dir), "ca.key"),
    await exportPrivateKeyPem(keys.privateKey),
    KEY_MODE,
  );
  await writeFileAtomic(join(pkiDir(dir), "ca.crt"), certificatePem(cert), 0o644);
}

export async function loadCa(dir: string): Promise<CaFiles> {
  const certFile = join(pkiDir(dir), "ca.crt");
  const keyFile = join(pkiDir(dir), "ca.key");
  try {
    const certPem = await Deno.readTextFile(certFile);
    const key = await importPrivateKeyPem(await Deno.readTextFile(keyFile));
    return { cert: parseCertificate(certPem), certPem, key };
  } catch (e) {
    throw new CtlError(
      `cannot load the cluster CA from ${pkiDir(dir)} (${(e as Error).message}); ` +
        `it is created by \`florctl init\` and must stay next to cluster.yaml`,
    );
  }
}

export interface EnsureOptions {
  cluster: string;
  now: Date;
  /** Serials listed under `revoked:`: a revoked certificate is replaced, never handed out. */
  revoked: ReadonlySet<string>;
  /** Replace a certificate that expires within this many ms (rotate). Default 0. */
  renewWithinMs?: number;
}

/** Returns the principal's certificate and key, issuing them if missing, expired, revoked,
 * or not from the current CA. */
export async function ensureCertificate(
  dir: string,
  ca: CaFiles,
  principal: Principal,
  o: EnsureOptions,
): Promise<PrincipalFiles> {
  const f = paths(dir, principal);
  const existing = await readIfUsable(f.cert, f.key, ca, o);
  if (existing) return { principal, ...existing, issued: false };
  await archive(f.cert);
  const keys = await generateKeyPair();
  const cert = await issueCertificate({
    ca: ca.cert,
    caKey: ca.key,
    cluster: o.cluster,
    principal,
    publicKey: keys.publicKey,
    now: o.now,
  });
  const keyPem = await exportPrivateKeyPem(keys.privateKey);
  const certPem = certificatePem(cert);
  await Deno.mkdir(join(pkiDir(dir), principal.kind), { recursive: true, mode: 0o700 });
  await writeFileAtomic(f.key, keyPem, KEY_MODE);
  await writeFileAtomic(f.cert, certPem, 0o644);
  return { principal, certPem, keyPem, cert, issued: true };
}

async function readIfUsable(certFile: string, keyFile: string, ca: CaFiles, o: EnsureOptions) {
  let certPem: string, keyPem: string;
  try {
    [certPem, keyPem] = await Promise.all([
      Deno.readTextFile(certFile),
      Deno.readTextFile(keyFile),
    ]);
  } catch {
    return undefined;
  }
  const cert = parseCertificate(certPem);
  const usable = cert.issuer === ca.cert.subject &&
    await cert.verify({ publicKey: ca.cert.publicKey, signatureOnly: true }).catch(() => false) &&
    cert.notAfter.getTime() - o.now.getTime() > (o.renewWithinMs ?? 0) &&
    !o.revoked.has(normalizeSerial(cert.serialNumber));
  return usable ? { certPem, keyPem, cert } : undefined;
}

/** A replaced certificate stays as `<name>.<serial>.crt` (its key is deleted): revoke finds
 * every serial a principal ever had, and the operator can see the history. */
async function archive(certFile: string) {
  let pem: string;
  try {
    pem = await Deno.readTextFile(certFile);
  } catch {
    return;
  }
  const serial = normalizeSerial(parseCertificate(pem).serialNumber);
  await Deno.rename(certFile, certFile.replace(/\.crt$/, `.${serial}.crt`));
}

/** Every certificate issued to the principal (current first), for revoke. */
export async function issuedCertificates(dir: string, p: Principal) {
  const out: x509.X509Certificate[] = [];
  const current = paths(dir, p).cert;
  try {
    out.push(parseCertificate(await Deno.readTextFile(current)));
  } catch {
    // none issued yet
  }
  try {
    for await (const e of Deno.readDir(join(pkiDir(dir), p.kind))) {
      if (e.name.startsWith(`${p.name}.`) && /^[^.]+\.[0-9a-f]+\.crt$/.test(e.name)) {
        out.push(parseCertificate(await Deno.readTextFile(join(pkiDir(dir), p.kind, e.name))));
      }
    }
  } catch {
    // no directory for this kind yet
  }
  return out;
}

/** Current certificates of every principal in pki/ (for rotate). */
export async function currentCertificates(dir: string) {
  const out: Array<{ principal: Principal; cert: x509.X509Certificate }> = [];
  for (const kind of ["node", "user", "service", "gateway"] as const) {
    try {
      for await (const e of Deno.readDir(join(pkiDir(dir), kind))) {
        const m = /^([a-z0-9-]+)\.crt$/.exec(e.name);
        if (!m) continue;
        const cert = parseCertificate(await Deno.readTextFile(join(pkiDir(dir), kind, e.name)));
        out.push({ principal: { kind, name: m[1] }, cert });
      }
    } catch {
      // no directory for this kind
    }
  }
  return out;
}

/** The SOCKS password a service's workloads use on their node; generated once. */
export async function ensureServicePassword(dir: string, service: string): Promise<string> {
  const f = paths(dir, { kind: "service", name: service });
  try {
    return (await Deno.readTextFile(f.password)).trim();
  } catch {
    const bytes = crypto.getRandomValues(new Uint8Array(24));
    const password = btoa(String.fromCharCode(...bytes)).replace(/[+/=]/g, "");
    await Deno.mkdir(join(pkiDir(dir), "service"), { recursive: true, mode: 0o700 });
    await writeFileAtomic(f.password, password + "\n", KEY_MODE);
    return password;
  }
}

/** Serial of the principal's current certificate, if one was issued (check: a revoked identity
 * that a node still hosts). */
export async function currentSerial(dir: string, p: Principal): Promise<string | undefined> {
  try {
    const cert = parseCertificate(await Deno.readTextFile(paths(dir, p).cert));
    return normalizeSerial(cert.serialNumber);
  } catch {
    return undefined;
  }
}

export function describe(p: PrincipalFiles): string {
  const serial = normalizeSerial(p.cert.serialNumber);
  return `${principalString(p.principal)} serial ${serial}, valid until ${
    p.cert.notAfter.toISOString().slice(0, 10)
  }`;
}

/** A gateway's LAN client password hashes: pki/gateway/<name>.clients.yaml (0600). Only
 * hashes are kept; the password is shown once, when the client is added. */
export function gatewayClientsPath(dir: string, gateway: string): string {
  return join(pkiDir(dir), "gateway", `${gateway}.clients.yaml`);
}

export async function gatewayClientsText(dir: string, gateway: string): Promise<string> {
  try {
    return await Deno.readTextFile(gatewayClientsPath(dir, gateway));
  } catch {
    return "{}\n";
  }
}

export async function setGatewayClientHash(
  dir: string,
  gateway: string,
  client: string,
  hash: string,
) {
  const current = YAML.parse(await gatewayClientsText(dir, gateway));
  const clients: Record<string, string> = current && typeof current === "object" ? current : {};
  clients[client] = hash;
  const sorted = Object.fromEntries(Object.entries(clients).sort(([a], [b]) => a.localeCompare(b)));
  await Deno.mkdir(join(pkiDir(dir), "gateway"), { recursive: true, mode: 0o700 });
  await writeFileAtomic(gatewayClientsPath(dir, gateway), YAML.stringify(sorted), KEY_MODE);
}

/** The CA's signature on cluster.yaml as it is now (pki/cluster.yaml.sig): reused while the
 * map is unchanged, so bundles and deploys stay byte-identical; re-signed when it changed. */
export async function clusterMapSignature(dir: string, ca: CaFiles, text: string): Promise<string> {
  const file = join(pkiDir(dir), "cluster.yaml.sig");
  const hex = await sha256Hex(text);
  try {
    const existing = await Deno.readTextFile(file);
    if (decodeMapSignature(existing).sha256 === hex) return existing;
  } catch {
    // none yet, or unreadable: sign anew
  }
  const signed = encodeMapSignature(await signClusterMap(text, ca.key, Date.now()));
  await writeFileAtomic(file, signed, 0o644);
  return signed;
}

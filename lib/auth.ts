/**
 * Client authentication for florete/1 (the QUIC server in Deno cannot ask for client
 * certificates, so the client proves its identity on the first stream instead).
 *
 * The client sends: its certificate chain, a timestamp, a random nonce, the identity of the
 * server it verified during the TLS handshake, and an ECDSA P-256 signature over
 *   CONTEXT || u16 len || server spiffe id || u64 timestamp ms || nonce(16)
 * The server accepts it only if the chain verifies against the cluster CA, the signature
 * verifies with the leaf's key, the signed server identity is its own, the timestamp is
 * within ±AUTH_WINDOW_MS of its clock, and the nonce was not seen in that window.
 * Threats and limits are written down in docs/security.md.
 *
 * Pure apart from WebCrypto: `now` is an input and the nonce cache is a value you pass in.
 */
import type * as x509 from "@peculiar/x509";
import { ByteCursor, ByteWriter, DecodeError, toHex, truncateUtf8 } from "./binary.ts";
import { AUTH_WINDOW_MS } from "./protocol.ts";
import {
  certificateDer,
  parseCertificate,
  PkiError,
  SIGNING_ALGORITHM,
  type VerifiedIdentity,
  verifyLeaf,
} from "./pki.ts";

export const AUTH_VERSION = 1;
/** Domain separation: a signature made for anything else can never pass as an auth message. */
export const AUTH_CONTEXT = "florete/1 client-auth\0";
export const NONCE_BYTES = 16;
/** Chains are [leaf] today; two leaves the room for one intermediate later. */
const MAX_CHAIN_CERTS = 2;
/** A P-256 leaf is ~600 bytes; 8 KiB bounds what an unauthenticated peer makes us buffer. */
export const MAX_AUTH_MESSAGE_BYTES = 8 * 1024;

export type AuthErrorCode =
  | "malformed"
  | "bad_version"
  | "certificate"
  | "bad_signature"
  | "wrong_server"
  | "clock_skew"
  | "replay"
  | "busy";

export class AuthError extends Error {
  override name = "AuthError";
  constructor(
    readonly code: AuthErrorCode,
    message: string,
    /** For code "certificate": why the chain was refused (expired, revoked, ...). */
    readonly pkiCode?: PkiError["code"],
  ) {
    super(message);
  }
}

export interface AuthMessage {
  chain: Uint8Array[];
  serverId: string;
  timestamp: number;
  nonce: Uint8Array;
  signature: Uint8Array;
}

export function signedBytes(serverId: string, timestamp: number, nonce: Uint8Array): Uint8Array {
  const ctx = new TextEncoder().encode(AUTH_CONTEXT);
  return new ByteWriter().bytes(ctx).long(new TextEncoder().encode(serverId)).u64(timestamp)
    .bytes(nonce).finish();
}

export function encodeAuthMessage(m: AuthMessage): Uint8Array {
  const w = new ByteWriter().u8(AUTH_VERSION).u8(m.chain.length);
  for (const der of m.chain) w.long(der);
  w.long(new TextEncoder().encode(m.serverId)).u64(m.timestamp).bytes(m.nonce).short(m.signature);
  const out = w.finish();
  if (out.length > MAX_AUTH_MESSAGE_BYTES) {
    throw new RangeError(`auth message of ${out.length} bytes exceeds ${MAX_AUTH_MESSAGE_BYTES}`);
  }
  return out;
}

export function decodeAuthMessage(body: Uint8Array): AuthMessage {
  if (body.length > MAX_AUTH_MESSAGE_BYTES) {
    throw new AuthError("malformed", `auth message exceeds ${MAX_AUTH_MESSAGE_BYTES} bytes`);
  }
  try {
    const c = new ByteCursor(body);
    const version = c.u8();
    if (version !== AUTH_VERSION) {
      throw new AuthError("bad_version", `auth version ${version} is not supported (want 1)`);
    }
    const count = c.u8();
    if (count < 1 || count > MAX_CHAIN_CERTS) {
      throw new AuthError("malformed", `chain of ${count} certificates (want 1)`);
    }
    const chain = Array.from({ length: count }, () => c.long());
    const serverId = new TextDecoder("utf-8", { fatal: true }).decode(c.long());
    const timestamp = c.u64();
    const nonce = c.bytes(NONCE_BYTES);
    const signature = c.short();
    c.end();
    return { chain, serverId, timestamp, nonce, signature };
  } catch (e) {
    if (e instanceof AuthError) throw e;
    if (e instanceof DecodeError || e instanceof TypeError) {
      throw new AuthError("malformed", `malformed auth message: ${e.message}`);
    }
    throw e;
  }
}

export interface BuildAuth {
  cert: x509.X509Certificate;
  key: CryptoKey;
  /** spiffe id of the node the client verified in the TLS handshake. */
  serverId: string;
  now: number;
  /** Injected for tests; defaults to 16 random bytes. */
  nonce?: Uint8Array;
}

export async function buildAuthMessage(b: BuildAuth): Promise<Uint8Array> {
  const nonce = b.nonce ?? crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  const data = signedBytes(b.serverId, b.now, nonce);
  const sig = new Uint8Array(
    await crypto.subtle.sign(SIGNING_ALGORITHM, b.key, data as Uint8Array<ArrayBuffer>),
  );
  return encodeAuthMessage({
    chain: [certificateDer(b.cert)],
    serverId: b.serverId,
    timestamp: b.now,
    nonce,
    signature: sig,
  });
}

/**
 * Nonces seen within the freshness window. Bounded: only messages with a valid signature
 * from a cluster certificate are remembered, and past MAX entries new auths are refused
 * ("busy") rather than forgetting nonces early, which would reopen replays.
 */
export class NonceCache {
  /** 100k × ~80 bytes ≈ 8 MB worst case; that is ~800 handshakes/s sustained for 2 minutes. */
  static readonly MAX = 100_000;
  #seen = new Map<string, number>(); // nonce hex → forget after (ms)

  get size(): number {
    return this.#seen.size;
  }

  /** Returns false if the nonce was already seen; remembers it otherwise. */
  remember(nonce: Uint8Array, timestamp: number, now: number): boolean | "full" {
    this.#prune(now);
    const key = toHex(nonce);
    if (this.#seen.has(key)) return false;
    if (this.#seen.size >= NonceCache.MAX) return "full";
    // A message stays acceptable until timestamp + window; keep its nonce that long.
    this.#seen.set(key, timestamp + AUTH_WINDOW_MS);
    return true;
  }

  #prune(now: number): void {
    for (const [k, until] of this.#seen) {
      if (until >= now) break; // insertion order ≈ expiry order; stragglers go next time
      this.#seen.delete(k);
    }
  }
}

export interface VerifyAuth {
  ca: x509.X509Certificate;
  cluster: string;
  /** The verifying server's own spiffe id. */
  selfId: string;
  now: number;
  revoked: ReadonlySet<string>;
  nonces: NonceCache;
}

export interface Authenticated extends VerifiedIdentity {
  nonce: string;
}

export async function verifyAuthMessage(body: Uint8Array, v: VerifyAuth): Promise<Authenticated> {
  const m = decodeAuthMessage(body);
  if (m.serverId !== v.selfId) {
    throw new AuthError(
      "wrong_server",
      `signed for ${truncateUtf8(m.serverId, 80)}, this is ${v.selfId}`,
    );
  }
  const skew = m.timestamp - v.now;
  if (Math.abs(skew) > AUTH_WINDOW_MS) {
    throw new AuthError(
      "clock_skew",
      `timestamp is ${Math.round(skew / 1000)} s off this node's clock (limit ±${
        AUTH_WINDOW_MS / 1000
      } s): fix the clock (NTP) on the client or this node`,
    );
  }
  if (m.chain.length !== 1) {
    throw new AuthError("certificate", "intermediate certificates are not supported", "malformed");
  }
  let identity: VerifiedIdentity;
  let leaf: x509.X509Certificate;
  try {
    leaf = parseCertificate(m.chain[0]);
    identity = await verifyLeaf(leaf, {
      ca: v.ca,
      cluster: v.cluster,
      now: new Date(v.now),
      revoked: v.revoked,
      usage: "clientAuth",
    });
  } catch (e) {
    if (e instanceof PkiError) throw new AuthError("certificate", e.message, e.code);
    throw e;
  }
  const key = await leafVerifyKey(leaf);
  const ok = await crypto.subtle.verify(
    SIGNING_ALGORITHM,
    key,
    m.signature as Uint8Array<ArrayBuffer>,
    signedBytes(m.serverId, m.timestamp, m.nonce) as Uint8Array<ArrayBuffer>,
  ).catch(() => false);
  if (!ok) throw new AuthError("bad_signature", "signature does not match the certificate's key");
  const fresh = v.nonces.remember(m.nonce, m.timestamp, v.now);
  if (fresh === "full") throw new AuthError("busy", "too many recent authentications; retry");
  if (!fresh) throw new AuthError("replay", "nonce already used: replayed auth message");
  return { ...identity, nonce: toHex(m.nonce) };
}

async function leafVerifyKey(leaf: x509.X509Certificate): Promise<CryptoKey> {
  try {
    return await leaf.publicKey.export(
      { name: "ECDSA", namedCurve: "P-256" } as EcKeyImportParams,
      ["verify"],
    );
  } catch {
    throw new AuthError("certificate", "certificate key is not ECDSA P-256", "malformed");
  }
}

/** Server → client answer on the auth stream: u8 version, u8 status (0 = ok), text reason. */
export function encodeAuthReply(ok: boolean, reason = ""): Uint8Array {
  return new ByteWriter().u8(AUTH_VERSION).u8(ok ? 0 : 1).text(truncateUtf8(reason, 255)).finish();
}

export function decodeAuthReply(body: Uint8Array): { ok: boolean; reason: string } {
  try {
    const c = new ByteCursor(body);
    if (c.u8() !== AUTH_VERSION) throw new DecodeError("bad auth reply version");
    const status = c.u8();
    const reason = c.text();
    c.end();
    return { ok: status === 0, reason };
  } catch (e) {
    throw new AuthError("malformed", `malformed auth reply: ${(e as Error).message}`);
  }
}

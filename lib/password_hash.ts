/**
 * Stored password hashes: "pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>".
 *
 * Passwords are NFC-normalised before hashing so the same text typed on systems that
 * compose accents differently still matches.
 */
import { constantTimeEqual } from "./binary.ts";

/**
 * The passwords florctl generates are 24 random bytes (192 bits), which no iteration count
 * makes easier or harder to guess; the hash only has to keep a leaked file from being a
 * usable password list. Every verification costs the gateway this many HMACs, so a higher
 * count would let any LAN client burn its CPU with bad passwords. 10k is a few
 * milliseconds. Hashes keep their own count, so changing this leaves old ones valid.
 */
export const PASSWORD_ITERATIONS = 10_000;

const SCHEME = "pbkdf2-sha256";
const SALT_BYTES = 16;
const KEY_BYTES = 32;
/** Bounds what a corrupt or hostile stored count can cost one verification (~seconds). */
const MAX_ITERATIONS = 10_000_000;
/** A salt only has to be unique; 64 bytes keeps stored lines short. */
const MAX_SALT_BYTES = 64;
/** Longer than any string hashPassword produces; checked before any parsing. */
const MAX_STORED_CHARS = 256;

export async function hashPassword(
  password: string,
  opts: { iterations?: number; salt?: Uint8Array } = {},
): Promise<string> {
  const iterations = opts.iterations ?? PASSWORD_ITERATIONS;
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > MAX_ITERATIONS) {
    throw new RangeError(`iterations ${iterations} outside 1..${MAX_ITERATIONS}`);
  }
  const salt = opts.salt ?? crypto.getRandomValues(new Uint8Array(SALT_BYTES));
  if (salt.length < 1 || salt.length > MAX_SALT_BYTES) {
    throw new RangeError(`salt of ${salt.length} bytes outside 1..${MAX_SALT_BYTES}`);
  }
  const key = await _derive(password, salt, iterations);
  return [SCHEME, String(iterations), salt.toBase64(), key.toBase64()].join("$");
}

/**
 * Constant-time comparison of the derived key; false (never throws) for malformed stored
 * strings or iteration counts outside 1..10_000_000.
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parsed = _parseStored(stored);
  if (parsed === undefined) return false;
  const key = await _derive(password, parsed.salt, parsed.iterations);
  return constantTimeEqual(key, parsed.key);
}

/** 24 random bytes as URL-safe base64 without padding (32 chars). */
export function generatePassword(): string {
  return crypto.getRandomValues(new Uint8Array(24)).toBase64({
    alphabet: "base64url",
    omitPadding: true,
  });
}

async function _derive(password: string, salt: Uint8Array, iterations: number) {
  const material = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(password.normalize("NFC")),
    "PBKDF2",
    false,
    ["deriveBits"],
  );
  // slice(): WebCrypto takes ArrayBuffer-backed views only; a caller's salt may be shared.
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: salt.slice(), iterations },
    material,
    KEY_BYTES * 8,
  );
  return new Uint8Array(bits);
}

function _parseStored(
  stored: string,
): { iterations: number; salt: Uint8Array; key: Uint8Array } | undefined {
  if (typeof stored !== "string" || stored.length > MAX_STORED_CHARS) return undefined;
  const parts = stored.split("$");
  if (parts.length !== 4 || parts[0] !== SCHEME) return undefined;
  if (!/^[1-9]\d{0,7}$/.test(parts[1])) return undefined;
  const iterations = Number(parts[1]);
  if (iterations > MAX_ITERATIONS) return undefined;
  const salt = _base64(parts[2]);
  const key = _base64(parts[3]);
  if (salt === undefined || salt.length < 1 || salt.length > MAX_SALT_BYTES) return undefined;
  if (key === undefined || key.length !== KEY_BYTES) return undefined;
  return { iterations, salt, key };
}

/** Padded standard base64 only: fromBase64 alone would skip whitespace. */
function _base64(s: string): Uint8Array | undefined {
  if (s.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(s)) return undefined;
  try {
    return Uint8Array.fromBase64(s, { lastChunkHandling: "strict" });
  } catch {
    return undefined;
  }
}

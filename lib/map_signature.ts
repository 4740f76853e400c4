/**
 * The operator's signature on the cluster map, so agents can take a newer map from any node
 * without trusting that node: florctl signs cluster.yaml with the cluster CA key whenever it
 * makes a bundle; nodes hand the map and its signature to the agents that ask; an agent
 * adopts a map only if the CA signed it and it is newer than the one it has.
 *
 *   cluster.yaml.sig = JSON { format, issued_at (ms), sha256 (hex of the map), signature }
 *   signature = ECDSA P-256 over CONTEXT || u64 issued_at || sha256 bytes
 *
 * A node can therefore withhold an update or offer an old map (refused: not newer), but not
 * forge or alter one. Policy is enforced by the nodes in any case; a client's map only decides
 * where it sends a request and gives the early answer.
 */
import type * as x509 from "@peculiar/x509";
import { ByteWriter, toHex } from "./binary.ts";
import { SIGNING_ALGORITHM } from "./pki.ts";
import { sha256 } from "./sha256.ts";

export const MAP_SIGNATURE_FORMAT = "florete-map-sig/1";
const CONTEXT = new TextEncoder().encode("florete/1 cluster-map\0");

export interface MapSignature {
  format: typeof MAP_SIGNATURE_FORMAT;
  issued_at: number;
  sha256: string;
  signature: string;
}

export class MapSignatureError extends Error {
  override name = "MapSignatureError";
}

function signedBytes(issuedAt: number, sha: Uint8Array): Uint8Array<ArrayBuffer> {
  return new ByteWriter().bytes(CONTEXT).u64(issuedAt).bytes(sha).finish() as Uint8Array<
    ArrayBuffer
  >;
}

export async function signClusterMap(
  text: string,
  caKey: CryptoKey,
  issuedAt: number,
): Promise<MapSignature> {
  const sha = await sha256(text);
  const sig = await crypto.subtle.sign(SIGNING_ALGORITHM, caKey, signedBytes(issuedAt, sha));
  return {
    format: MAP_SIGNATURE_FORMAT,
    issued_at: issuedAt,
    sha256: toHex(sha),
    signature: new Uint8Array(sig).toBase64(),
  };
}

export function encodeMapSignature(s: MapSignature): string {
  return JSON.stringify(s) + "\n";
}

export function decodeMapSignature(text: string): MapSignature {
  let v: Partial<MapSignature>;
  try {
    v = JSON.parse(text);
  } catch {
    throw new MapSignatureError("the map signature is not JSON");
  }
  if (
    v?.format !== MAP_SIGNATURE_FORMAT || !Number.isSafeInteger(v.issued_at) ||
    typeof v.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(v.sha256) ||
    typeof v.signature !== "string"
  ) {
    throw new MapSignatureError("malformed map signature");
  }
  return v as MapSignature;
}

/** Checks that the CA signed exactly this map; returns when it was issued. */
export async function verifyClusterMap(
  text: string,
  sig: MapSignature,
  ca: x509.X509Certificate,
): Promise<number> {
  const sha = await sha256(text);
  if (toHex(sha) !== sig.sha256) {
    throw new MapSignatureError("the map does not match its signature");
  }
  let raw: Uint8Array<ArrayBuffer>;
  try {
    raw = Uint8Array.fromBase64(sig.signature) as Uint8Array<ArrayBuffer>;
  } catch {
    throw new MapSignatureError("malformed map signature");
  }
  const key = await ca.publicKey.export({ name: "ECDSA", namedCurve: "P-256" }, ["verify"]);
  const ok = await crypto.subtle.verify(
    SIGNING_ALGORITHM,
    key,
    raw,
    signedBytes(sig.issued_at, sha),
  )
    .catch(() => false);
  if (!ok) throw new MapSignatureError("the map is not signed by this cluster's CA");
  return sig.issued_at;
}

/**
 * The configuration hash a node reports and florctl expects: it identifies exactly which
 * flor.yaml and cluster map an agent runs, so enroll and deploy can verify that the node
 * took the files they pushed (and `status` can show nodes that drifted).
 */
import { ByteWriter, toHex } from "./binary.ts";

const CONTEXT = new TextEncoder().encode("florete config hash v1\0");

export async function configHash(florYaml: string, clusterYaml: string): Promise<string> {
  const enc = new TextEncoder();
  const a = enc.encode(florYaml);
  const b = enc.encode(clusterYaml);
  const body = new Uint8Array(CONTEXT.length + 8 + a.length + b.length);
  body.set(CONTEXT);
  body.set(new ByteWriter().u32(a.length).u32(b.length).finish(), CONTEXT.length);
  body.set(a, CONTEXT.length + 8);
  body.set(b, CONTEXT.length + 8 + a.length);
  const digest = await crypto.subtle.digest("SHA-256", body);
  return toHex(new Uint8Array(digest)).slice(0, 16);
}

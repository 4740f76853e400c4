/**
 * `florctl revoke <kind:name> [--reason TEXT]`: lists the serials of every certificate the
 * principal was issued under `revoked:` in cluster.yaml. Nodes refuse them (and close their
 * live connections) once `florctl deploy` has delivered the map; a new bundle for the same
 * principal gets a fresh certificate.
 */
import { normalizeSerial, parsePrincipal, principalString } from "../../lib/identity.ts";
import { openClusterDir, saveClusterDir } from "../support/cluster_dir.ts";
import { CtlError } from "../support/ctl_error.ts";
import { issuedCertificates } from "../support/pki_store.ts";

export async function revoke(who: string, o: { dir: string; reason?: string }) {
  let principal;
  try {
    principal = parsePrincipal(who);
  } catch (e) {
    throw new CtlError((e as Error).message);
  }
  const id = principalString(principal);
  const cd = await openClusterDir(o.dir);
  const certs = await issuedCertificates(o.dir, principal);
  if (!certs.length) throw new CtlError(`no certificate was ever issued to ${id}`);
  const already = new Set(cd.cluster.revoked.map((r) => r.serial));
  const now = new Date();
  const added: string[] = [];
  for (const cert of certs) {
    const serial = normalizeSerial(cert.serialNumber);
    if (already.has(serial) || cert.notAfter < now) continue; // expired ones are refused anyway
    const entry: Record<string, string> = {
      serial,
      principal: id,
      date: now.toISOString().slice(0, 10),
    };
    if (o.reason) entry.reason = o.reason;
    if (!cd.doc.has("revoked") || cd.doc.get("revoked") === null) cd.doc.set("revoked", []);
    const list = cd.doc.get("revoked") as { flow?: boolean; add(v: unknown): void };
    list.flow = false;
    list.add(cd.doc.createNode(entry));
    added.push(serial);
  }
  if (!added.length) {
    console.log(`${id}: every certificate is already revoked or expired; nothing to do`);
    return;
  }
  await saveClusterDir(cd);
  console.log(`revoked ${id}: ${added.join(", ")}`);
  console.log("run `florctl deploy` to make the nodes refuse it and cut its live connections");
}

/**
 * `florctl rotate [--within 30d]`: re-issues the certificates that expire within the window
 * (new key, new serial; the old certificate stays valid until it expires). Nodes and services
 * get theirs with `florctl deploy`; users need a new file from `florctl enroll user`.
 */
import { revokedSerials } from "../../lib/cluster.ts";
import { principalString } from "../../lib/identity.ts";
import { openClusterDir } from "../support/cluster_dir.ts";
import { CtlError } from "../support/ctl_error.ts";
import { currentCertificates, ensureCertificate, loadCa } from "../support/pki_store.ts";

const DAY_MS = 86_400_000;

export function parseWithin(text: string): number {
  const m = /^(\d+)d$/.exec(text.trim());
  if (!m) throw new CtlError(`--within ${text}: write a number of days, e.g. 30d`);
  return Number(m[1]) * DAY_MS;
}

export async function rotate(o: { dir: string; within: string }) {
  const within = parseWithin(o.within);
  const cd = await openClusterDir(o.dir);
  const ca = await loadCa(o.dir);
  const now = new Date();
  const exists = (kind: string, name: string) =>
    Object.hasOwn(
      (cd.cluster as unknown as Record<string, Record<string, unknown>>)[`${kind}s`] ?? {},
      name,
    );
  const renewed: string[] = [];
  for (const { principal, cert } of await currentCertificates(o.dir)) {
    if (!exists(principal.kind, principal.name)) continue; // removed from the cluster
    if (cert.notAfter.getTime() - now.getTime() > within) continue;
    const files = await ensureCertificate(o.dir, ca, principal, {
      cluster: cd.cluster.cluster,
      now,
      revoked: revokedSerials(cd.cluster),
      renewWithinMs: within,
    });
    const id = principalString(principal);
    renewed.push(id);
    console.log(`renewed ${id}: valid until ${files.cert.notAfter.toISOString().slice(0, 10)}`);
    if (principal.kind === "user") {
      console.log(
        `  give ${principal.name} a new file: florctl enroll user ${principal.name} --out ${principal.name}.flor`,
      );
    }
  }
  if (ca.cert.notAfter.getTime() - now.getTime() <= within) {
    console.error(
      `warning: the cluster CA expires ${ca.cert.notAfter.toISOString().slice(0, 10)}; ` +
        `CA rotation is not automated in this release: plan a new CA and re-enroll every machine`,
    );
  }
  if (!renewed.length) console.log(`nothing expires within ${o.within}`);
  else if (renewed.some((r) => !r.startsWith("user:"))) {
    console.log("run `florctl deploy` to deliver the node and service certificates");
  }
}

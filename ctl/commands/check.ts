/** `florctl check`: every problem in cluster.yaml, failed policy tests and revoked identities a
 * node still hosts included, as FILE:LINE:COL: message; exit 1 on errors. */
import YAML from "yaml";
import type { Cluster } from "../../lib/cluster.ts";
import { type ConfigProblem, formatProblem, problemAt } from "../../lib/config_problems.ts";
import { type Principal, principalString } from "../../lib/identity.ts";
import { checkClusterAndTests } from "../../lib/policy_tests.ts";
import { clusterFile } from "../support/cluster_dir.ts";
import { CtlError } from "../support/ctl_error.ts";
import { currentSerial } from "../support/pki_store.ts";

export async function check(dir: string): Promise<void> {
  const file = clusterFile(dir);
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    const message = `${file}: cannot read: ${(e as Error).message}`;
    console.error(message);
    throw new CtlError(message, { reported: true });
  }
  const checked = checkClusterAndTests(text, file);
  const problems = [...checked.problems];
  if (checked.cluster) {
    const serials = new Map<string, string>();
    for (const p of hostedIdentities(checked.cluster)) {
      const serial = await currentSerial(dir, p);
      if (serial !== undefined) serials.set(principalString(p), serial);
    }
    problems.push(...hostedRevocations(checked.cluster, serials, text, file));
  }
  for (const p of problems) console.error(formatProblem(p));
  const errors = problems.filter((p) => p.severity === "error").length;
  if (errors) {
    const message = `${errors} error(s) in ${file}`;
    console.error(message);
    throw new CtlError(message, { reported: true });
  }
  console.log(`${file}: ok${problems.length ? ` (${problems.length} warning(s))` : ""}`);
}

/** What nodes run as: their node identity and the services they host. */
export function hostedIdentities(c: Cluster): Principal[] {
  return [
    ...Object.keys(c.nodes).map((name) => ({ kind: "node" as const, name })),
    ...Object.keys(c.services).map((name) => ({ kind: "service" as const, name })),
  ];
}

/**
 * Revocations of a certificate a node still runs with (`serials`: principal → serial of its
 * current certificate in pki/). The node drops that identity at its next reload and refuses
 * to start without its node identity, so it needs a fresh certificate: an error, not a note.
 */
export function hostedRevocations(
  c: Cluster,
  serials: ReadonlyMap<string, string>,
  text: string,
  file: string,
): ConfigProblem[] {
  const lineCounter = new YAML.LineCounter();
  const doc = YAML.parseDocument(text, { lineCounter });
  const problems: ConfigProblem[] = [];
  c.revoked.forEach((rev, i) => {
    const id = principalString(rev.principal);
    if (serials.get(id) !== rev.serial) return;
    const { kind, name } = rev.principal;
    // Only node and service certificates live on a node (hostedIdentities); a user or
    // gateway that shares a service's name is not one of them.
    const node = kind === "node" ? name : kind === "service" ? c.services[name]?.node : undefined;
    if (node === undefined) return;
    problems.push(problemAt(
      file,
      doc,
      lineCounter,
      ["revoked", i, "serial"],
      `${id} is revoked but node ${node} still runs with that certificate ` +
        `(pki/${kind}/${name}.crt): run \`florctl deploy --node ${node}\` to issue and ` +
        `deliver a new one, or remove ${id} from cluster.yaml`,
    ));
  });
  return problems;
}

/** `florctl init`: a new cluster directory with its CA and the operator's identity. */
import { join } from "node:path";
import YAML from "yaml";
import { exists } from "../../lib/file_exists.ts";
import { isValidName, NAME_RULE } from "../../lib/identity.ts";
import { CLUSTER_FILE, writeFileAtomic } from "../support/cluster_dir.ts";
import { CtlError } from "../support/ctl_error.ts";
import { initCa } from "../support/pki_store.ts";

/** `florctl init <cluster> [--operator NAME]`: the operator becomes `user:<NAME>` with
 * `role: admin`, the identity florctl uses to talk to nodes over the mesh. */
export async function init(name: string, dir: string, operator = "admin") {
  if (!isValidName(name)) throw new CtlError(`bad cluster name '${name}': ${NAME_RULE}`);
  if (!isValidName(operator)) throw new CtlError(`bad operator name '${operator}': ${NAME_RULE}`);
  await Deno.mkdir(dir, { recursive: true });
  const file = join(dir, CLUSTER_FILE);
  if (await exists(file)) {
    throw new CtlError(`${file} already exists: this directory holds a cluster already`);
  }
  if (await exists(join(dir, "pki", "ca.key"))) {
    throw new CtlError(`${join(dir, "pki", "ca.key")} exists: refusing to replace a CA`);
  }
  await initCa(dir, name, new Date());
  const doc = new YAML.Document({
    cluster: name,
    nodes: {},
    users: { [operator]: { role: "admin" } },
    services: {},
    revoked: [],
  });
  doc.commentBefore =
    ` Florete cluster map: the single source of truth. Keep it in git; secrets stay in pki/.\n` +
    ` Edit with florctl or by hand, then run \`florctl check\`.`;
  await writeFileAtomic(file, doc.toString({ lineWidth: 0 }), 0o644);
  await Deno.writeTextFile(
    join(dir, ".gitignore"),
    "# keys never go into git\npki/**/*.key\npki/**/*.password\n",
  );
  console.log(
    `created cluster '${name}' in ${dir}: ${CLUSTER_FILE}, pki/ca.crt, pki/ca.key (0600)`,
  );
}

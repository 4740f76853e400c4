/** `florctl user add <name> [--group G[,G...]]...`. */
import { isValidName, NAME_RULE } from "../../lib/identity.ts";
import { entryOf } from "../../lib/cluster.ts";
import { openClusterDir, saveClusterDir, setEntry } from "../support/cluster_dir.ts";
import { CtlError } from "../support/ctl_error.ts";

export async function userAdd(name: string, o: { group: string[]; dir: string }) {
  if (!isValidName(name)) throw new CtlError(`bad user name '${name}': ${NAME_RULE}`);
  const groups = [...new Set(o.group.flatMap((g) => g.split(",")).map((g) => g.trim()))]
    .filter(Boolean);
  for (const g of groups) {
    if (!isValidName(g)) throw new CtlError(`bad group name '${g}': ${NAME_RULE}`);
  }
  const cd = await openClusterDir(o.dir);
  if (entryOf(cd.cluster.users, name)) {
    throw new CtlError(`user ${name} already exists in ${cd.file}`);
  }
  setEntry(cd.doc, "users", name, groups.length ? { groups } : {});
  await saveClusterDir(cd);
  console.log(`added user ${name}${groups.length ? ` (groups: ${groups.join(", ")})` : ""}`);
}

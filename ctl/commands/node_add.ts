/** `florctl node add <name> --endpoint HOST:PORT [--ssh TARGET]`. */
import { isValidName, NAME_RULE } from "../../lib/identity.ts";
import { entryOf } from "../../lib/cluster.ts";
import { openClusterDir, saveClusterDir, setEntry } from "../support/cluster_dir.ts";
import { CtlError } from "../support/ctl_error.ts";
import { parseSshTarget } from "../support/ssh.ts";

export async function nodeAdd(name: string, o: { endpoint: string; ssh?: string; dir: string }) {
  if (!isValidName(name)) throw new CtlError(`bad node name '${name}': ${NAME_RULE}`);
  // Refused before anything is written: this text later becomes an argument of ssh.
  if (o.ssh !== undefined) parseSshTarget(o.ssh);
  const cd = await openClusterDir(o.dir);
  if (entryOf(cd.cluster.nodes, name)) {
    throw new CtlError(`node ${name} already exists in ${cd.file}`);
  }
  setEntry(cd.doc, "nodes", name, { endpoint: o.endpoint, ...(o.ssh ? { ssh: o.ssh } : {}) });
  await saveClusterDir(cd);
  console.log(`added node ${name} (${o.endpoint})`);
}

/** `florctl bundle node|user|gateway <name> --out DIR`: a bundle (ctl/support/bundle_files.ts)
 * written into a directory. */
import { dirname, join } from "node:path";
import {
  type Bundle,
  type BundleKind,
  configFileName,
  type ListenChoice,
  makeBundle,
} from "../support/bundle_files.ts";
import { openClusterDir, writeFileAtomic } from "../support/cluster_dir.ts";
import { CtlError } from "../support/ctl_error.ts";
import { KEY_MODE } from "../support/pki_store.ts";

/** Writes a bundle into a directory. Re-bundling into the same directory replaces the old
 * files; any other non-empty directory is refused so a typo in --out cannot scatter keys. */
export async function writeBundleDir(b: Bundle, out: string): Promise<void> {
  const entries: string[] = [];
  try {
    for await (const e of Deno.readDir(out)) entries.push(e.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (entries.length && !entries.includes(configFileName(b.kind))) {
    throw new CtlError(`${out} is not empty and is not a bundle: choose an empty --out`);
  }
  for (const sub of ["certs", "keys", "secrets"]) {
    await Deno.remove(join(out, sub), { recursive: true }).catch(() => {});
  }
  for (const f of b.files) {
    const path = join(out, ...f.path.split("/"));
    await Deno.mkdir(dirname(path), { recursive: true, mode: f.secret ? 0o700 : 0o755 });
    await writeFileAtomic(path, f.data, f.secret ? KEY_MODE : 0o644);
  }
}

export interface BundleOptions extends ListenChoice {
  dir: string;
  out: string;
}

/** `florctl bundle node|user|gateway <name> --out DIR`. */
export async function bundle(kind: BundleKind, name: string, o: BundleOptions) {
  const cd = await openClusterDir(o.dir);
  const b = await makeBundle(cd, kind, name, o);
  await writeBundleDir(b, o.out);
  for (const n of b.notes) console.log(n);
  console.log(`bundle for ${kind}:${name} written to ${o.out} (config ${b.configHash})`);
}

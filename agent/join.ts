/**
 * `flor join FILE`: installs a one-file bundle for this OS user, where `flor run` without
 * --config finds it (lib/platform.ts: XDG config dir, Application Support, %APPDATA%).
 */
import { dirname, join } from "node:path";
import { decodeBundleFile } from "../lib/bundle_file.ts";
import { currentTarget, userConfigDir } from "../lib/platform.ts";
import { writeFileAtomic } from "../lib/atomic_file.ts";
import { keepForwards } from "./forward_spec.ts";

export function joinedConfigDir(): string {
  return userConfigDir(currentTarget().os, Deno.env.toObject());
}

export function joinedConfigFile(): string {
  return join(joinedConfigDir(), "flor.yaml");
}

export async function joinBundle(file: string, o: { force?: boolean } = {}): Promise<string> {
  const bundle = decodeBundleFile(await Deno.readTextFile(file));
  const dir = joinedConfigDir();
  const marker = join(dir, ".principal");
  const existing = await Deno.readTextFile(marker).then((t) => t.trim(), () => undefined);
  const mine = `${bundle.principal}@${bundle.cluster}`;
  if (existing && existing !== mine && !o.force) {
    throw new Error(
      `${dir} already holds the bundle of ${existing}; pass --force to replace it with ${mine}`,
    );
  }
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  for (const sub of ["certs", "keys", "secrets"]) {
    await Deno.remove(join(dir, sub), { recursive: true }).catch(() => {});
  }
  // The user's own forwards survive a new bundle of the same identity (renewed certificate).
  const previous = existing === mine
    ? await Deno.readTextFile(join(dir, "flor.yaml")).catch(() => undefined)
    : undefined;
  for (const f of bundle.files) {
    const path = join(dir, ...f.path.split("/"));
    await Deno.mkdir(dirname(path), { recursive: true, mode: f.secret ? 0o700 : 0o755 });
    const data = f.path === "flor.yaml" ? keepForwards(previous, f.data) : f.data;
    // Secrets: 0600, or an owner-only ACL on Windows.
    await writeFileAtomic(path, data, f.secret ? 0o600 : 0o644);
  }
  await Deno.writeTextFile(marker, mine + "\n");
  return dir;
}

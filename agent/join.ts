/**
 * `flor join FILE`: installs a one-file bundle for this OS user, where `flor run` without
 * --config finds it (lib/platform.ts: XDG config dir, Application Support, %APPDATA%);
 * `flor leave` takes it away again. The autostart is in user_service.ts.
 */
import { dirname, join } from "node:path";
import { decodeBundleFile } from "../lib/bundle_file.ts";
import { currentTarget, stopProcessCommand, userConfigDir } from "../lib/platform.ts";
import { writeFileAtomic } from "../lib/atomic_file.ts";
import { exists } from "../lib/file_exists.ts";
import { livePid, readRunRecord } from "./run_state.ts";
import { removeUserService, runCommand, thisUserService } from "./user_service.ts";
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

/** What `flor leave` would remove: the joined bundle (with its state) and the autostart. */
export async function joinedInstall(): Promise<
  { dir: string; principal?: string; bundle: boolean; service?: string }
> {
  const dir = joinedConfigDir();
  const bundle = await exists(dir);
  const principal = await Deno.readTextFile(join(dir, ".principal")).then(
    (t) => t.trim(),
    () => undefined,
  );
  const file = thisUserService().file;
  const service = await Deno.stat(file).then(() => file, () => undefined);
  return { dir, principal, bundle, service };
}

/**
 * `flor leave`: stops and removes the autostart, stops an agent started by hand from this
 * bundle, and deletes the bundle, its keys and its state. Returns what it did.
 */
export async function leaveBundle(): Promise<string[]> {
  const { dir, service } = await joinedInstall();
  const said: string[] = [];
  if (await removeUserService()) said.push(`stopped and removed the autostart ${service}`);
  const pid = livePid(await readRunRecord(join(dir, "state")), Date.now());
  if (pid !== undefined && pid !== Deno.pid) {
    // A command, not Deno.kill: Windows has no signal a console program can catch
    // (stopProcessCommand), and one way on every OS.
    const stopped = await runCommand(stopProcessCommand(currentTarget().os, pid));
    if (stopped.ok) {
      said.push(`stopped the agent running from this bundle (pid ${pid})`);
      await _waitGone(join(dir, "state"));
    }
  }
  await Deno.remove(dir, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  said.push(`removed ${dir} (bundle, keys and state)`);
  return said;
}

/** How long a stopping agent gets to remove its run record before the files go anyway. */
const STOP_WAIT_MS = 5_000;

async function _waitGone(stateDir: string): Promise<void> {
  const end = Date.now() + STOP_WAIT_MS;
  while (Date.now() < end && await readRunRecord(stateDir) !== undefined) {
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Writing files whole: into a temporary name beside the target, then renamed over it, so a
 * crash never leaves a torn file. Secrets (mode 0600: keys, passwords, the control token) are
 * files only their owner may read:
 *
 * POSIX: mode 0600. Windows has no mode bits: the file's ACL is replaced by one entry for the
 * current user (`icacls FILE /inheritance:r /grant:r USER:F`), so other accounts, including
 * members of Users, cannot read it; administrators can still take ownership, as with root.
 */

/** The icacls arguments that leave `user` as the only one with access (pure, for tests). */
export function windowsOwnerOnlyArgs(path: string, user: string): string[] {
  return [path, "/inheritance:r", "/grant:r", `${user}:F`];
}

export async function writeOwnerOnly(path: string, data: string): Promise<void> {
  const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  await Deno.writeTextFile(tmp, data, { mode: 0o600 });
  if (Deno.build.os === "windows") {
    const user = Deno.env.get("USERNAME");
    if (!user) throw new Error(`cannot restrict ${path}: USERNAME is not set`);
    const r = await new Deno.Command("icacls", { args: windowsOwnerOnlyArgs(tmp, user) }).output();
    if (!r.success) throw new Error(`icacls could not restrict ${path} to ${user}`);
  } else {
    await Deno.chmod(tmp, 0o600); // the mode given at creation is masked by the umask
  }
  await Deno.rename(tmp, path);
}

/** Writes `data` to `path` atomically with `mode`; 0600 means owner-only (writeOwnerOnly). */
export async function writeFileAtomic(path: string, data: string, mode = 0o644): Promise<void> {
  if (mode === 0o600) return await writeOwnerOnly(path, data);
  const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  await Deno.writeTextFile(tmp, data, { mode });
  await Deno.chmod(tmp, mode).catch(() => {}); // the mode given at creation is masked by the umask
  await Deno.rename(tmp, path);
}

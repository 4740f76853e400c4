/**
 * Remote hosts through the system's OpenSSH, so the operator's own ssh config, agent and
 * known_hosts apply. florctl never turns host-key checking off: an unknown or changed host
 * key stops the command with an explanation.
 *
 * `FLORCTL_SSH_CONFIG` (or `--ssh-config`) names an ssh_config file passed as `-F`, for
 * setups that keep Florete hosts in their own file (and for tests).
 */
import { CtlError } from "./cluster_dir.ts";

export interface SshTarget {
  user?: string;
  host: string;
  port?: number;
}

export interface SshResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `root@203.0.113.10:22`, `admin@host`, `host`, `user@[2001:db8::1]:2222`, an ssh alias. */
export function parseSshTarget(text: string): SshTarget {
  const m = /^(?:([^@\s]+)@)?(\[[0-9a-fA-F:.]+\]|[^@\s:[\]]+)(?::(\d{1,5}))?$/.exec(text);
  if (!m) {
    throw new CtlError(`ssh target '${text}': write [user@]host[:port], e.g. root@203.0.113.10`);
  }
  if (m[1]?.startsWith("-") || m[2].startsWith("-")) {
    // ssh would take it for an option (-oProxyCommand=... runs a command here).
    throw new CtlError(`ssh target '${text}': a user or host cannot start with '-'`);
  }
  const port = m[3] === undefined ? undefined : Number(m[3]);
  if (port !== undefined && (port < 1 || port > 65535)) {
    throw new CtlError(`ssh target '${text}': port must be 1-65535`);
  }
  return { user: m[1], host: m[2].replace(/^\[|\]$/g, ""), port };
}

export function formatSshTarget(t: SshTarget): string {
  const host = t.host.includes(":") ? `[${t.host}]` : t.host;
  return `${t.user ? `${t.user}@` : ""}${host}${t.port ? `:${t.port}` : ""}`;
}

export interface SshContext {
  /** ssh_config file for -F. */
  config?: string;
}

export function sshContext(config?: string): SshContext {
  return { config: config ?? Deno.env.get("FLORCTL_SSH_CONFIG") ?? undefined };
}

function sshArgs(ctx: SshContext, t: SshTarget): string[] {
  return [
    ...(ctx.config ? ["-F", ctx.config] : []),
    // Never prompt (florctl runs unattended); the user's host-key policy stays in force.
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=10",
    ...(t.port ? ["-p", String(t.port)] : []),
    t.user ? `${t.user}@${t.host}` : t.host,
  ];
}

/** Runs a POSIX shell script on the host (`sh -s`, script on stdin, optional data after it
 * is not supported: use upload() for bulk data). */
export async function sshScript(ctx: SshContext, t: SshTarget, script: string): Promise<SshResult> {
  return await run(ctx, t, ["sh", "-s"], new TextEncoder().encode(script));
}

/** Streams a local file to `remotePath` (written by `cat`, so any sshd works, sftp or not). */
export async function upload(ctx: SshContext, t: SshTarget, local: string, remotePath: string) {
  const file = await Deno.open(local, { read: true });
  const child = new Deno.Command("ssh", {
    args: [...sshArgs(ctx, t), "--", `cat > ${shellQuote(remotePath)}`],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  await file.readable.pipeTo(child.stdin).catch(() => {}); // see run(): the exit status tells
  const out = await child.output();
  const r = decode(out);
  if (r.code !== 0) throw sshFailure(t, `upload to ${remotePath}`, r);
}

async function run(ctx: SshContext, t: SshTarget, cmd: string[], stdin?: Uint8Array) {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("ssh", {
      args: [...sshArgs(ctx, t), "--", ...cmd],
      stdin: stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CtlError("ssh is not installed: florctl uses the system's OpenSSH client");
    }
    throw e;
  }
  if (stdin) {
    // ssh may exit (no route, refused) before reading its input: its exit status and stderr
    // say why, so a broken pipe here is not the error to report.
    const w = child.stdin.getWriter();
    await w.write(stdin).catch(() => {});
    await w.close().catch(() => {});
  }
  return decode(await child.output());
}

function decode(out: Deno.CommandOutput): SshResult {
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs a script and returns its stdout, or throws a CtlError that says what went wrong. */
export async function sshScriptOk(ctx: SshContext, t: SshTarget, what: string, script: string) {
  const r = await sshScript(ctx, t, script);
  if (r.code !== 0) throw sshFailure(t, what, r);
  return r.stdout;
}

/** ssh exits 255 for its own failures; anything else is the remote command's. */
export function sshFailure(t: SshTarget, what: string, r: SshResult): CtlError {
  const host = formatSshTarget(t);
  const err = r.stderr.trim();
  if (r.code === 255) {
    if (/host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/i.test(err)) {
      return new CtlError(
        `${host}: host key verification failed. florctl never bypasses it: check the host's ` +
          `key out of band, then add it to known_hosts (ssh-keyscan, or connect once with ssh)`,
      );
    }
    if (/permission denied/i.test(err)) {
      return new CtlError(
        `${host}: ssh login refused (${err}): load your key into ssh-agent or set IdentityFile`,
      );
    }
    return new CtlError(`${host}: cannot connect with ssh: ${err || "no answer"}`);
  }
  return new CtlError(`${host}: ${what} failed (exit ${r.code}): ${err || r.stdout.trim()}`);
}

/** Single-quotes for POSIX sh. */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

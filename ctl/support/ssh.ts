/**
 * Remote hosts through the system's OpenSSH, so the operator's own ssh config, agent and
 * known_hosts apply. florctl never turns host-key checking off: an unknown or changed host
 * key stops the command with an explanation.
 *
 * `FLORCTL_SSH_CONFIG` (or `--ssh-config`) names an ssh_config file passed as `-F`, for
 * setups that keep Florete hosts in their own file (and for tests).
 */
import { CtlError } from "./ctl_error.ts";
import {
  formatSshTarget,
  parseSshTarget as parseTarget,
  type SshTarget,
  SshTargetError,
} from "../../lib/ssh_target.ts";

export type { SshTarget };

export interface SshResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** lib/ssh_target.ts, failing as a CtlError (the message says how to write a target). */
export function parseSshTarget(text: string): SshTarget {
  try {
    return parseTarget(text);
  } catch (e) {
    if (e instanceof SshTargetError) throw new CtlError(e.message);
    throw e;
  }
}

export { formatSshTarget };

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

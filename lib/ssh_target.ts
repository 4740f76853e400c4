/**
 * `[user@]host[:port]`: where florctl reaches a node with the system's OpenSSH. Pure, and the
 * one definition: cluster.yaml's schema, `florctl node add --ssh` and every command that
 * reads `nodes.<n>.ssh` (enroll, deploy, doctor) parse it here.
 *
 * The character set is strict on purpose. The text becomes an argument of ssh(1), and
 * OpenSSH expands `%h`/`%r` into ProxyCommand, Match exec and LocalCommand lines that a
 * shell runs: a target like `root@$(touch${IFS}pwned)` must never get that far, whatever
 * the installed ssh would do with it. A leading `-` would be read as an option.
 */

export interface SshTarget {
  user?: string;
  host: string;
  port?: number;
}

export class SshTargetError extends Error {
  override name = "SshTargetError";
}

/** POSIX portable user names (plus '+', used by some directory services). */
const _USER = /^[A-Za-z0-9._+][A-Za-z0-9._+-]{0,31}$/;
/** DNS names, IPv4 addresses and ssh_config aliases: letters, digits, '.', '-', '_'. */
const _HOST = /^[A-Za-z0-9._][A-Za-z0-9._-]{0,252}$/;
const _V6 = /^\[([0-9a-fA-F:.]+)\]$/;
const _SHAPE = "write [user@]host[:port], e.g. root@203.0.113.10";

/** Parses `root@203.0.113.10:22`, `admin@host`, `host`, `user@[2001:db8::1]:2222` or an
 * ssh alias; throws SshTargetError quoting the input and saying how to write one. */
export function parseSshTarget(text: string): SshTarget {
  const bad = (why: string) => new SshTargetError(`ssh target '${text}': ${why}${_SHAPE}`);
  const m = /^(?:([^@]*)@)?(\[[^\]]*\]|[^@:[\]]*)(?::([^@:]*))?$/.exec(text);
  if (!m || m[2] === "") throw bad("");
  const [, user, hostText, portText] = m;
  if (user !== undefined) {
    if (user.startsWith("-")) {
      throw bad("a user cannot start with '-' (ssh reads it as an option); ");
    }
    if (!_USER.test(user)) {
      throw bad("the user may contain only letters, digits, '.', '_', '+' and '-'; ");
    }
  }
  let host = hostText;
  const v6 = _V6.exec(hostText);
  if (v6) {
    host = v6[1];
    if (!host.includes(":")) throw bad("");
  } else if (hostText.startsWith("-")) {
    throw bad("a host cannot start with '-' (ssh reads it as an option); ");
  } else if (!_HOST.test(hostText)) {
    throw bad("the host may contain only letters, digits, '.', '-' and '_'; ");
  }
  let port: number | undefined;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText)) throw bad("");
    port = Number(portText);
    if (port < 1 || port > 65535) {
      throw new SshTargetError(`ssh target '${text}': port must be 1-65535`);
    }
  }
  return { user, host, port };
}

export function formatSshTarget(t: SshTarget): string {
  const host = t.host.includes(":") ? `[${t.host}]` : t.host;
  return `${t.user ? `${t.user}@` : ""}${host}${t.port ? `:${t.port}` : ""}`;
}

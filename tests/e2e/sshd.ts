/**
 * A real OpenSSH server for end-to-end tests, reached the way an operator reaches theirs:
 * `ssh -F config host` with key auth, a pinned host key (StrictHostKeyChecking yes), batch
 * mode and connection reuse. sshd runs in the foreground as a child of the test, listening
 * only on 127.0.0.1, with everything (keys, configs, control socket) in one temp dir.
 * Remote commands run as root on this machine, so tests give each "host" its own directory.
 */
import { join } from "node:path";
import { freeTcpPort, runOk, type RunResult, runToEnd } from "./harness.ts";

export interface SshServer {
  /** sshd's port on `address`. */
  port: number;
  /** The address sshd listens on (127.0.0.1 unless asked otherwise). */
  address: string;
  /** The listening sshd's pid. */
  pid: number;
  /** Pids of sshd's per-connection processes (monitor and session) running now. */
  sessionPids(): Promise<number[]>;
  /** The Host alias defined in `config`. */
  host: string;
  /** ssh_config(5) file for the client (`ssh -F config host`, `scp -F config`). */
  config: string;
  /** Temp dir holding keys, configs and the control socket. */
  dir: string;
  /** `ssh -F config host -- cmd`, returns code/stdout/stderr. */
  run(cmd: string): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Closes the ControlMaster, stops sshd and its session processes, removes `dir`. */
  stop(): Promise<void>;
}

const SSHD = "/usr/sbin/sshd";
const HOST_ALIAS = "florete-test";
/** sshd must run a command within this long; it takes ~100 ms here, CI can be slower. */
const START_TIMEOUT_MS = 10_000;
/** A port taken between our probe and sshd's bind is rare; a few fresh tries suffice. */
const BIND_ATTEMPTS = 5;
/** sshd's stderr kept for failure messages; a failed start logs well under 4 KiB. */
const STDERR_LIMIT = 64 * 1024;
/** How long stop() lets sshd, its sessions and the ControlMaster exit before SIGKILL. */
const STOP_GRACE_MS = 3_000;
/**
 * sockaddr_un.sun_path is 108 bytes on Linux (104 on BSDs) and ssh appends a 17-char
 * random suffix while it creates the master socket, so the expanded ControlPath has to
 * stay under 104 - 17.
 */
const CONTROL_PATH_LIMIT = 104 - 17;
/** `%C` is a 40-hex-digit hash of local host, remote host, port and user. */
const CONTROL_NAME = "cm-%C";
const CONTROL_NAME_EXPANDED_LENGTH = "cm-".length + 40;

export interface SshdOptions {
  /** known_hosts pins a different host key, so the client must refuse the server. */
  hostKeyMismatch?: boolean;
  /** Address sshd listens on and the client connects to (default 127.0.0.1). */
  address?: string;
  /** A command to run sshd under, e.g. ["ip", "netns", "exec", NS] (default none). */
  serverWrap?: string[];
  /** A command to run ssh under (run(), the startup probe, stop()). */
  clientWrap?: string[];
  /** ControlMaster connection reuse in `config` (default true); a benchmark turns it off. */
  reuse?: boolean;
}

export async function startSshd(opts: SshdOptions = {}): Promise<SshServer> {
  const dir = await Deno.makeTempDir({ prefix: "flor-ssh-" });
  try {
    return await _start(dir, {
      hostKeyMismatch: opts.hostKeyMismatch ?? false,
      address: opts.address ?? "127.0.0.1",
      serverWrap: opts.serverWrap ?? [],
      clientWrap: opts.clientWrap ?? [],
      reuse: opts.reuse ?? true,
    });
  } catch (e) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
}

async function _start(dir: string, o: Required<SshdOptions>): Promise<SshServer> {
  const { hostKeyMismatch, address } = o;
  const controlPathLength = dir.length + 1 + CONTROL_NAME_EXPANDED_LENGTH;
  if (controlPathLength > CONTROL_PATH_LIMIT) {
    throw new RangeError(
      `sshd fixture: ControlPath under ${dir} would be ${controlPathLength} bytes, over the ` +
        `${CONTROL_PATH_LIMIT}-byte unix socket limit; point TMPDIR at a shorter dir (/tmp)`,
    );
  }
  // Debian's sshd will not start without its privilege separation directory, which the
  // ssh.service unit normally creates at boot; this machine does not boot that unit.
  await Deno.mkdir("/run/sshd", { recursive: true, mode: 0o755 });

  const hostKey = join(dir, "ssh_host_ed25519_key");
  const clientKey = join(dir, "id_ed25519");
  const authorizedKeys = join(dir, "authorized_keys");
  const knownHosts = join(dir, "known_hosts");
  // Always the real host key: the startup probe uses it when `known_hosts` is made wrong.
  const trueKnownHosts = join(dir, "known_hosts.true");
  const sshdConfig = join(dir, "sshd_config");
  const config = join(dir, "ssh_config");

  await Promise.all([_keygen(hostKey), _keygen(clientKey)]);
  await Deno.copyFile(`${clientKey}.pub`, authorizedKeys);
  const hostPub = await _publicKey(hostKey);
  let knownPub = hostPub;
  if (hostKeyMismatch) {
    const otherKey = join(dir, "other_host_ed25519_key");
    await _keygen(otherKey);
    knownPub = await _publicKey(otherKey);
  }

  for (let attempt = 1;; attempt++) {
    const port = freeTcpPort();
    // ssh looks up HostName (not the alias) in known_hosts, bracketed with any port but 22.
    const hostPattern = `[${address}]:${port}`;
    await Deno.writeTextFile(trueKnownHosts, `${hostPattern} ${hostPub}\n`);
    await Deno.writeTextFile(knownHosts, `${hostPattern} ${knownPub}\n`);
    await Deno.writeTextFile(
      sshdConfig,
      _lines([
        `ListenAddress ${address}`,
        `Port ${port}`,
        `HostKey ${hostKey}`,
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password",
        `AuthorizedKeysFile ${authorizedKeys}`,
        // The temp dir is not owned and moded the way StrictModes wants a home dir to be.
        "StrictModes no",
        // Without PAM sshd reads /etc/shadow itself; root's "*" there does not count as locked.
        "UsePAM no",
        "PidFile none",
        // scp speaks SFTP by default since OpenSSH 9.0.
        "Subsystem sftp /usr/lib/openssh/sftp-server",
        "PrintMotd no",
        "LogLevel VERBOSE",
      ]),
    );
    await Deno.writeTextFile(
      config,
      _lines([
        `Host ${HOST_ALIAS}`,
        `  HostName ${address}`,
        `  Port ${port}`,
        "  User root",
        `  IdentityFile ${clientKey}`,
        "  IdentitiesOnly yes",
        `  UserKnownHostsFile ${knownHosts}`,
        // Keeps the machine's /etc/ssh/ssh_known_hosts from vouching for (or against) us.
        "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes",
        "  BatchMode yes",
        "  ConnectTimeout 5",
        "  LogLevel ERROR",
        ...(o.reuse
          ? [
            "  ControlMaster auto",
            `  ControlPath ${join(dir, CONTROL_NAME)}`,
            "  ControlPersist 60",
          ]
          : ["  ControlMaster no", "  ControlPath none"]),
      ]),
    );

    const sshd = _spawnSshd(sshdConfig, o.serverWrap);
    const ssh = (args: string[]) => _ssh(config, args, o.clientWrap);
    const run = (cmd: string) => ssh([HOST_ALIAS, "--", cmd]);
    const shutdown = () => _shutdown(sshd, ssh, dir);
    // From another namespace the port cannot be probed from here; the ssh probe tells.
    const tcpCheck = o.clientWrap.length === 0 ? { address, port } : undefined;
    const started = await _waitStarted(sshd, tcpCheck, () =>
      hostKeyMismatch
        // The pinned key is wrong on purpose, so prove sshd works with the true one and
        // without a ControlMaster, which would let later connections skip the key check.
        ? ssh([
          "-o",
          `UserKnownHostsFile=${trueKnownHosts}`,
          "-o",
          "ControlPath=none",
          HOST_ALIAS,
          "--",
          "true",
        ])
        : run("true"));
    if (started.ok) {
      return {
        port,
        address,
        pid: sshd.child.pid,
        sessionPids: async () =>
          sshd.hasExited() ? [] : (await _descendants(sshd.child.pid)).map((p) => p.pid),
        host: HOST_ALIAS,
        config,
        dir,
        run,
        async stop() {
          await shutdown();
          await Deno.remove(dir, { recursive: true }).catch(() => {});
        },
      };
    }
    await shutdown();
    if (started.bindFailed && attempt < BIND_ATTEMPTS) continue;
    throw new Error(
      `sshd on ${address}:${port} did not start (${started.why}); its stderr:\n${sshd.stderr()}`,
    );
  }
}

interface SshdChild {
  child: Deno.ChildProcess;
  /** Resolves once sshd has exited and its stderr is drained. */
  exited: Promise<Deno.CommandStatus>;
  hasExited(): boolean;
  stderr(): string;
}

function _spawnSshd(sshdConfig: string, wrap: string[]): SshdChild {
  // sshd re-executes itself for each connection, so it must be started by absolute path.
  // `ip netns exec` execs in place, so a wrapped child's pid is still sshd's.
  const cmd = [...wrap, SSHD, "-D", "-e", "-f", sshdConfig];
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  let exited = false;
  const drained = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr = (stderr + chunk).slice(-STDERR_LIMIT);
    }
  })().catch(() => {});
  const status = Promise.all([child.status, drained]).then(([s]) => {
    exited = true;
    return s;
  });
  return { child, exited: status, hasExited: () => exited, stderr: () => stderr };
}

type Started = { ok: true } | { ok: false; bindFailed: boolean; why: string };

/** Waits for sshd to accept TCP and then for `probe` to succeed; says why if it did not. */
async function _waitStarted(
  sshd: SshdChild,
  tcpCheck: { address: string; port: number } | undefined,
  probe: () => Promise<{ code: number; stderr: string }>,
): Promise<Started> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = "port never accepted a connection";
  while (Date.now() < deadline) {
    if (sshd.hasExited()) {
      const status = await sshd.exited;
      // Another process took the port between freeTcpPort() and sshd's bind.
      if (/Bind to port .* failed|Cannot bind any address/.test(sshd.stderr())) {
        return { ok: false, bindFailed: true, why: "port taken" };
      }
      return { ok: false, bindFailed: false, why: `sshd exited with code ${status.code}` };
    }
    try {
      if (tcpCheck) {
        const conn = await Deno.connect({ hostname: tcpCheck.address, port: tcpCheck.port });
        conn.close();
      }
      // The port may belong to whoever took it from us; the pinned host key tells.
      const r = await probe();
      if (r.code === 0) return { ok: true };
      last = `probe exited ${r.code}: ${r.stderr.trim()}`;
    } catch (e) {
      if (!(e instanceof Deno.errors.ConnectionRefused)) throw e;
    }
    await _sleep(50);
  }
  return { ok: false, bindFailed: false, why: `timed out after ${START_TIMEOUT_MS} ms; ${last}` };
}

async function _shutdown(
  sshd: SshdChild,
  ssh: (args: string[]) => Promise<unknown>,
  dir: string,
): Promise<void> {
  // Session processes are sshd's descendants; the ControlMaster is a daemonized ssh that
  // names the control socket in its title. Once sshd is reaped its pid may be reused, so
  // its descendants are only looked up while it runs.
  const listener = sshd.child.pid;
  const sessions = sshd.hasExited() ? [] : await _descendants(listener);
  const others = (await _mentioning(dir)).filter((p) => p.pid !== listener);
  const leftovers = [...sessions, ...others];
  const deadline = Date.now() + STOP_GRACE_MS;
  // Fails harmlessly ("No such file") when no master is running. Closing the master ends
  // the sessions; they are left to exit while sshd still runs, so that sshd reaps them:
  // orphans go to PID 1, which on some test machines reaps only every few seconds.
  await ssh(["-O", "exit", HOST_ALIAS]).catch(() => {});
  let alive = await _alive(leftovers);
  while (alive.length > 0 && Date.now() < deadline) {
    await _sleep(20);
    alive = await _alive(leftovers);
  }
  // child.kill, not Deno.kill: it will not signal a reused pid after sshd was reaped.
  const killSshd = (signal: Deno.Signal) => {
    try {
      sshd.child.kill(signal);
    } catch {
      // exited meanwhile
    }
  };
  killSshd("SIGTERM");
  const timer = setTimeout(() => killSshd("SIGKILL"), Math.max(0, deadline - Date.now()));
  await sshd.exited;
  clearTimeout(timer);
  for (const p of await _alive(leftovers)) _kill(p.pid, "SIGKILL");
}

function _kill(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch {
    // exited meanwhile
  }
}

function _sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function _ssh(config: string, args: string[], wrap: string[] = []): Promise<RunResult> {
  // runToEnd gives no stdin: ssh would otherwise forward the test runner's to the remote command.
  const cmd = [...wrap, "ssh", "-F", config, ...args];
  return runToEnd(cmd[0], cmd.slice(1));
}

async function _keygen(path: string): Promise<void> {
  await runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "florete-test", "-f", path]);
}

/** "ssh-ed25519 AAAA..." without the comment. */
async function _publicKey(privatePath: string): Promise<string> {
  const [type, key] = (await Deno.readTextFile(`${privatePath}.pub`)).trim().split(/\s+/);
  return `${type} ${key}`;
}

function _lines(lines: string[]): string {
  return lines.join("\n") + "\n";
}

/** A process identity that survives pid reuse: pid plus start time from /proc/<pid>/stat. */
interface Proc {
  pid: number;
  start: string;
}

/** `/proc/<pid>/stat` after the parenthesised comm, which may itself hold spaces. */
async function _stat(pid: number): Promise<string[] | undefined> {
  try {
    const s = await Deno.readTextFile(`/proc/${pid}/stat`);
    return s.slice(s.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

async function _procs(): Promise<number[]> {
  const pids: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (/^\d+$/.test(e.name)) pids.push(Number(e.name));
  }
  return pids;
}

async function _descendants(root: number): Promise<Proc[]> {
  const children = new Map<number, Proc[]>();
  for (const pid of await _procs()) {
    const f = await _stat(pid);
    if (!f) continue;
    // fields after comm: state(0) ppid(1) ... starttime(19)
    const ppid = Number(f[1]);
    children.set(ppid, [...children.get(ppid) ?? [], { pid, start: f[19] }]);
  }
  const out: Proc[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c.pid);
    }
  }
  return out;
}

async function _mentioning(text: string): Promise<Proc[]> {
  const out: Proc[] = [];
  for (const pid of await _procs()) {
    if (pid === Deno.pid) continue;
    try {
      const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`);
      const f = await _stat(pid);
      if (f && cmdline.includes(text)) out.push({ pid, start: f[19] });
    } catch {
      // exited while we looked
    }
  }
  return out;
}

/** Those still running; a zombie has exited (this machine's PID 1 may never reap it). */
async function _alive(procs: Proc[]): Promise<Proc[]> {
  const out: Proc[] = [];
  for (const p of procs) {
    const f = await _stat(p.pid);
    if (f && f[19] === p.start && f[0] !== "Z") out.push(p);
  }
  return out;
}

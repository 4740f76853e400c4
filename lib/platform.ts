/**
 * Where Florete lives on each operating system: release targets and file locations.
 *
 * The one place that knows OS specifics (FLORETE.md, "Environments"). Everything here is
 * pure except `currentTarget`, so enrollment can compute a remote node's layout from
 * `uname -sm` printed over ssh, and tests can relocate it under a temporary prefix.
 */

import { posix, win32 } from "node:path";
import { AGENT_V8_FLAGS_ARG } from "./memory.ts";

export type Os = "linux" | "darwin" | "windows";
export type Arch = "x64" | "arm64";

/** A release target, named like the archives: `linux-x64`. */
export interface Target {
  os: Os;
  arch: Arch;
}

export function targetName(t: Target): string {
  return `${t.os}-${t.arch}`;
}

// Machine names as printed by `uname -m`, Windows' PROCESSOR_ARCHITECTURE and Deno.build.
const _ARCHES: Record<string, Arch> = {
  x86_64: "x64",
  amd64: "x64",
  x64: "x64",
  aarch64: "arm64",
  arm64: "arm64",
};

// Git Bash, MSYS2 and Cygwin print e.g. "MINGW64_NT-10.0-19045" as the system name.
const _WINDOWS_SYSTEM = /^(windows|mingw|msys|cygwin)/i;

/**
 * `uname -sm` output ("Linux x86_64", "Darwin arm64") to a Target. Windows hints such as
 * "Windows_NT AMD64" or Git Bash's "MINGW64_NT-10.0 x86_64" are accepted too.
 */
export function parseUname(text: string): Target {
  const words = text.trim().split(/\s+/);
  if (words.length !== 2 || words[0] === "") {
    throw new Error(
      `cannot read "${text.trim()}" as a system: expected "<system> <machine>" as printed by ` +
        `uname -sm, e.g. "Linux x86_64"`,
    );
  }
  const [system, machine] = words;
  let os: Os;
  if (/^linux$/i.test(system)) os = "linux";
  else if (/^darwin$/i.test(system)) os = "darwin";
  else if (_WINDOWS_SYSTEM.test(system)) os = "windows";
  else {
    throw new Error(
      `unsupported system "${system}" (from "${text.trim()}"): Florete runs on Linux, macOS ` +
        `and Windows`,
    );
  }
  return { os, arch: _arch(machine, `"${text.trim()}"`) };
}

/** The target this process runs on. */
export function currentTarget(): Target {
  const { os, arch } = Deno.build;
  if (os !== "linux" && os !== "darwin" && os !== "windows") {
    throw new Error(`unsupported system "${os}": Florete runs on Linux, macOS and Windows`);
  }
  return { os, arch: _arch(arch, "Deno.build") };
}

function _arch(machine: string, source: string): Arch {
  const arch = _ARCHES[machine.toLowerCase()];
  if (arch === undefined) {
    throw new Error(
      `unsupported architecture "${machine}" (from ${source}): Florete is built for ` +
        `x86_64 (x64) and aarch64 (arm64)`,
    );
  }
  return arch;
}

/** Where a node's system service keeps things. All paths are absolute. */
export interface NodePaths {
  /** Directory holding the binaries. */
  bin: string;
  /** The agent the service runs. */
  binary: string;
  /** The agent before the last upgrade, kept for rollback. */
  previous: string;
  /** Directory of the node's bundle (flor.yaml, certificates, key, cluster map). */
  config: string;
  configFile: string;
  /** The service's only writable directory. */
  state: string;
  log: string;
  pidFile: string;
  /** Service definition file; absent on Windows, where sc.exe registers the service. */
  unit?: string;
  /** Linux: the sysctl drop-in that lets flor raise its UDP buffers (lib/udp_buffer.ts). */
  sysctl?: string;
}

const _MAC_ROOT = "/Library/Application Support/Florete";
const _WINDOWS_ROOT = "C:\\ProgramData\\Florete";

/** The real locations, before any prefix. */
const _LAYOUTS: Record<Os, NodePaths> = {
  linux: {
    bin: "/opt/florete/bin",
    binary: "/opt/florete/bin/flor",
    previous: "/opt/florete/bin/flor.previous",
    config: "/etc/florete",
    configFile: "/etc/florete/flor.yaml",
    state: "/var/lib/florete",
    log: "/var/log/florete/flor.log",
    pidFile: "/var/lib/florete/flor.pid",
    unit: "/etc/systemd/system/flor.service",
    sysctl: "/etc/sysctl.d/60-florete.conf",
  },
  darwin: {
    bin: `${_MAC_ROOT}/bin`,
    binary: `${_MAC_ROOT}/bin/flor`,
    previous: `${_MAC_ROOT}/bin/flor.previous`,
    config: `${_MAC_ROOT}/etc`,
    configFile: `${_MAC_ROOT}/etc/flor.yaml`,
    state: `${_MAC_ROOT}/state`,
    log: "/Library/Logs/Florete/flor.log",
    pidFile: `${_MAC_ROOT}/state/flor.pid`,
    unit: "/Library/LaunchDaemons/dev.florete.flor.plist",
  },
  windows: {
    bin: `${_WINDOWS_ROOT}\\bin`,
    binary: `${_WINDOWS_ROOT}\\bin\\flor.exe`,
    // Keeps the .exe suffix so the rollback binary can still be run (`--version`).
    previous: `${_WINDOWS_ROOT}\\bin\\flor.previous.exe`,
    config: `${_WINDOWS_ROOT}\\etc`,
    configFile: `${_WINDOWS_ROOT}\\etc\\flor.yaml`,
    state: `${_WINDOWS_ROOT}\\state`,
    log: `${_WINDOWS_ROOT}\\log\\flor.log`,
    pidFile: `${_WINDOWS_ROOT}\\state\\flor.pid`,
  },
};

/**
 * The node layout on `os`. A `prefix` other than "/" relocates every path beneath it
 * (`/tmp/n1` gives `/tmp/n1/opt/florete/bin/flor`); on Windows the drive of the real path
 * is replaced by the prefix (`D:\n1` gives `D:\n1\ProgramData\Florete\bin\flor.exe`).
 */
export function nodePaths(os: Os, prefix?: string): NodePaths {
  const real = _LAYOUTS[os];
  if (prefix === undefined || prefix === "/") return { ...real };
  const relocate = os === "windows" ? _windowsRelocator(prefix) : _posixRelocator(prefix);
  const out = {} as NodePaths;
  for (const [key, path] of Object.entries(real) as [keyof NodePaths, string][]) {
    out[key] = relocate(path);
  }
  return out;
}

function _posixRelocator(prefix: string): (path: string) => string {
  if (!posix.isAbsolute(prefix)) {
    throw new Error(`prefix "${prefix}" must be an absolute path, e.g. /tmp/n1`);
  }
  return (path) => posix.join(prefix, path);
}

function _windowsRelocator(prefix: string): (path: string) => string {
  // Drive-letter or UNC only: a rootless "\n1" would depend on the current drive.
  if (!/^([a-z]:[\\/]|\\\\[^\\])/i.test(prefix)) {
    throw new Error(`prefix "${prefix}" must be an absolute Windows path, e.g. D:\\n1`);
  }
  return (path) => win32.join(prefix, path.slice(win32.parse(path).root.length));
}

/**
 * Where `flor join` installs a user's bundle, from the environment passed in:
 * linux `$XDG_CONFIG_HOME/florete` (or `$HOME/.config/florete`), darwin
 * `$HOME/Library/Application Support/Florete`, windows `%APPDATA%\Florete`.
 */
export function userConfigDir(os: Os, env: Record<string, string | undefined>): string {
  switch (os) {
    case "linux": {
      // The XDG base directory spec says to ignore an empty or relative value.
      const xdg = env.XDG_CONFIG_HOME;
      if (xdg && posix.isAbsolute(xdg)) return posix.join(xdg, "florete");
      const home = _required(env, "HOME", "~/.config/florete (XDG_CONFIG_HOME is not set either)");
      return posix.join(home, ".config", "florete");
    }
    case "darwin": {
      const home = _required(env, "HOME", "~/Library/Application Support/Florete");
      return posix.join(home, "Library", "Application Support", "Florete");
    }
    case "windows":
      return win32.join(_required(env, "APPDATA", "%APPDATA%\\Florete"), "Florete");
  }
}

function _required(
  env: Record<string, string | undefined>,
  name: string,
  forPath: string,
): string {
  const value = env[name];
  if (!value) {
    throw new Error(
      `environment variable ${name} is not set; it is needed to find ${forPath}. ` +
        `Set ${name} and run the command again`,
    );
  }
  return value;
}

/** `florete-<version>-<target>`: the directory a release archive unpacks to. */
export function releaseDirName(version: string, target: string): string {
  return `florete-${version}-${target}`;
}

/** The release archive for a target: .zip for Windows, .tar.gz elsewhere. */
export function releaseArchiveName(version: string, target: string): string {
  return `${releaseDirName(version, target)}.${target.startsWith("windows") ? "zip" : "tar.gz"}`;
}

/** The programs `flor join` and `flor leave` run on each OS: the service manager's CLI and
 * the one that stops a process (the agent itself runs none). */
export const USER_SERVICE_PROGRAMS: Record<Os, readonly string[]> = {
  linux: ["systemctl", "kill"],
  darwin: ["launchctl", "kill"],
  windows: ["schtasks", "taskkill"],
};

/** Stops process `pid` of this user: SIGTERM where there are signals (a clean stop);
 * Windows has none a console program can catch, so taskkill /F. */
export function stopProcessCommand(os: Os, pid: number): string[] {
  return os === "windows"
    ? ["taskkill", "/PID", String(pid), "/F"]
    : ["kill", "-TERM", String(pid)];
}

/** How `flor join` makes the agent start with the user's session on each OS. */
export interface UserService {
  kind: "systemd-user" | "launch-agent" | "logon-task";
  /** The definition file join writes (unit, plist, or the task's XML kept for schtasks). */
  file: string;
  /** launchd only: where the agent's output goes (its directory must exist first). */
  logFile?: string;
  /** Register, enable and start it now; run in order, stop at the first failure. */
  install: string[][];
  /** Stop and unregister it; run in order, each allowed to fail (already gone). */
  uninstall: string[][];
  /** Run after the file is removed (systemd forgets the unit). */
  afterRemove: string[][];
}

const _USER_UNIT = "flor.service";
/** launchd label of the user's agent (its own gui/<uid> domain: no clash with a node's). */
const _LAUNCH_AGENT_LABEL = "dev.florete.flor";
/** The task's folder and name in Task Scheduler. */
const _LOGON_TASK = "\\Florete\\flor";

/**
 * The per-user service for `os`, from the environment (HOME, XDG_CONFIG_HOME, APPDATA) and,
 * on macOS, the user's numeric id (launchd's `gui/<uid>` domain).
 */
export function userService(
  os: Os,
  env: Record<string, string | undefined>,
  uid?: number,
): UserService {
  switch (os) {
    case "linux": {
      // systemd reads user units from $XDG_CONFIG_HOME/systemd/user, as flor's config dir.
      const config = posix.dirname(userConfigDir(os, env));
      const unit = ["systemctl", "--user"];
      return {
        kind: "systemd-user",
        file: posix.join(config, "systemd", "user", _USER_UNIT),
        install: [[...unit, "daemon-reload"], [...unit, "enable", "--now", _USER_UNIT]],
        uninstall: [[...unit, "disable", "--now", _USER_UNIT]],
        afterRemove: [[...unit, "daemon-reload"]],
      };
    }
    case "darwin": {
      const home = _required(env, "HOME", "~/Library/LaunchAgents");
      if (uid === undefined) throw new Error("the user id is needed for launchd's gui/<uid>");
      const file = posix.join(home, "Library", "LaunchAgents", `${_LAUNCH_AGENT_LABEL}.plist`);
      return {
        kind: "launch-agent",
        file,
        logFile: posix.join(home, "Library", "Logs", "Florete", "flor.log"),
        install: [["launchctl", "bootstrap", `gui/${uid}`, file]],
        uninstall: [["launchctl", "bootout", `gui/${uid}/${_LAUNCH_AGENT_LABEL}`]],
        afterRemove: [],
      };
    }
    case "windows": {
      const file = win32.join(userConfigDir(os, env), "flor-logon-task.xml");
      return {
        kind: "logon-task",
        file,
        install: [
          ["schtasks", "/Create", "/TN", _LOGON_TASK, "/XML", file, "/F"],
          ["schtasks", "/Run", "/TN", _LOGON_TASK],
        ],
        uninstall: [
          ["schtasks", "/End", "/TN", _LOGON_TASK],
          ["schtasks", "/Delete", "/TN", _LOGON_TASK, "/F"],
        ],
        afterRemove: [],
      };
    }
  }
}

/**
 * The command line that runs this flor, before its subcommand, so a service can start it:
 * the launcher of a release archive (`<dir>/flor`, `<dir>\flor.cmd`), a `deno compile`d
 * executable itself, or from a source checkout `deno run` with the checkout's deno.json.
 */
export function agentCommand(o: {
  os: Os;
  /** Deno.execPath(). */
  execPath: string;
  /** Deno.mainModule as a path. */
  mainPath: string;
  /** The deno.json beside the source, for a source checkout. */
  denoConfig?: string;
}): string[] {
  const path = o.os === "windows" ? win32 : posix;
  const exe = path.basename(o.execPath).toLowerCase();
  if (exe !== "deno" && exe !== "deno.exe") return [o.execPath]; // deno compile
  const release = path.dirname(path.dirname(o.execPath));
  const runtime = path.basename(path.dirname(o.execPath));
  if (
    runtime === "runtime" && path.basename(o.mainPath) === "flor.js" &&
    path.dirname(path.dirname(o.mainPath)) === release
  ) {
    return [path.join(release, o.os === "windows" ? "flor.cmd" : "flor")];
  }
  if (o.denoConfig === undefined) {
    throw new Error(
      `cannot tell how to start flor again: ${o.mainPath} is neither a release nor a source ` +
        "checkout with deno.json; install a release archive and run its flor",
    );
  }
  // As `deno task flor` runs it (lib/memory.ts).
  return [
    o.execPath,
    "run",
    "--allow-all",
    AGENT_V8_FLAGS_ARG,
    "--config",
    o.denoConfig,
    o.mainPath,
  ];
}

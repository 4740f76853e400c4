/**
 * Where Florete lives on each operating system: release targets and file locations.
 *
 * The one place that knows OS specifics (FLORETE.md, "Environments"). Everything here is
 * pure except `currentTarget`, so enrollment can compute a remote node's layout from
 * `uname -sm` printed over ssh, and tests can relocate it under a temporary prefix.
 */

import { posix, win32 } from "node:path";

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

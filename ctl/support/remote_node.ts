/**
 * What florctl does on a node's host over SSH: find out what it is, compare the installed
 * files with what should be there, write only what changed, and start, restart or reload
 * the agent under its supervisor (systemd, launchd, or a pid file for `--init none`).
 *
 * The shell scripts are built by pure functions (tested as text) and run with `sh -s`, one
 * SSH round trip per step; they use only POSIX sh, coreutils and base64.
 */
import { posix } from "node:path";
import { sha256Hex } from "../../lib/sha256.ts";
import { type NodePaths, nodePaths, type Os, parseUname, type Target } from "../../lib/platform.ts";
import type { BundleFile } from "./bundle_files.ts";
import { CtlError } from "./ctl_error.ts";
import { launchdPlist, type ServiceSpec, systemdUnit } from "../../lib/service_unit.ts";
import { DEFAULT_UDP_BUFFER_BYTES, sysctlDropIn } from "../../lib/udp_buffer.ts";
import { shellQuote as q, type SshContext, sshScriptOk, type SshTarget } from "./ssh.ts";

export type Init = "systemd" | "launchd" | "none";

export interface RemoteFile {
  /** Absolute path on the node. */
  path: string;
  data: string;
  mode: number;
}

export async function detectTarget(ctx: SshContext, t: SshTarget): Promise<Target> {
  const out = await sshScriptOk(ctx, t, "uname -sm", "uname -sm\n");
  try {
    return parseUname(out.trim());
  } catch (e) {
    throw new CtlError(`${t.host}: ${(e as Error).message}`);
  }
}

export function defaultInit(os: Os): Init {
  if (os === "linux") return "systemd";
  if (os === "darwin") return "launchd";
  throw new CtlError(
    "enrolling Windows nodes over SSH is not supported yet: install the release archive and " +
      "create the service with sc.exe (see the README)",
  );
}

/** The node's bundle and service definition as files at their installed paths. */
export function installedFiles(
  os: Os,
  prefix: string,
  init: Init,
  bundle: BundleFile[],
): { paths: NodePaths; files: RemoteFile[] } {
  const paths = nodePaths(os, prefix);
  const files: RemoteFile[] = bundle.map((f) => ({
    path: posix.join(paths.config, f.path),
    data: f.data,
    mode: f.secret ? 0o600 : 0o644,
  }));
  const spec: ServiceSpec = {
    binary: paths.binary,
    configFile: paths.configFile,
    stateDir: paths.state,
    logFile: paths.log,
    lowPort: false,
  };
  if (init === "systemd") files.push({ path: paths.unit!, data: systemdUnit(spec), mode: 0o644 });
  if (init === "systemd" && paths.sysctl) {
    // The node's own transport.udp_buffer_bytes is not known here: bundles keep the default.
    files.push({ path: paths.sysctl, data: sysctlDropIn(DEFAULT_UDP_BUFFER_BYTES), mode: 0o644 });
  }
  if (init === "launchd") files.push({ path: paths.unit!, data: launchdPlist(spec), mode: 0o644 });
  return { paths, files };
}

const HASH_FN = `h() { if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1"; ` +
  `else shasum -a 256 "$1"; fi; }`;

/** Prints "<sha256>  <path>" for each of the paths that exists. */
export function hashScript(paths: string[]): string {
  return [
    "set -u",
    HASH_FN,
    `for f in ${paths.map(q).join(" ")}; do [ -f "$f" ] && h "$f"; done`,
    "exit 0",
    "",
  ].join("\n");
}

/** Parses `sha256sum`/`shasum` lines. GNU escapes names holding "\\" or a newline with a
 * leading "\\" on the line; names are taken exactly (no trimming: they may end in a space). */
export function parseHashes(out: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of out.split("\n")) {
    const r = /^(\\?)([0-9a-f]{64}) [ *](.+)$/.exec(line.replace(/\r$/, ""));
    if (!r) continue;
    const name = r[1]
      ? r[3].replace(/\\(\\|n|r)/g, (_, c) => c === "n" ? "\n" : c === "r" ? "\r" : "\\")
      : r[3];
    m.set(name, r[2]);
  }
  return m;
}

/** The files whose installed copy differs from `files` or is missing (`installed`: what
 * `parseHashes` read back from `hashScript`). */
export async function changedFiles(
  files: RemoteFile[],
  installed: ReadonlyMap<string, string>,
): Promise<RemoteFile[]> {
  const changed = [];
  for (const f of files) if (installed.get(f.path) !== await sha256Hex(f.data)) changed.push(f);
  return changed;
}

/** A bundle's certificates, keys and secrets: writeScript's `keep` (what it must not prune). */
export function keptPaths(files: BundleFile[]): string[] {
  return files.filter((f) => /^(certs|keys|secrets)\//.test(f.path)).map((f) => f.path);
}

/** Writes files atomically (temp + rename), secrets in 0700 directories, and removes files
 * in the bundle's certs/, keys/ and secrets/ that the bundle no longer has. */
export function writeScript(files: RemoteFile[], configDir: string, keep: string[]): string {
  const lines = [
    "set -eu",
    "umask 077",
    `w() { mkdir -p "$(dirname "$1")"; base64 -d > "$1.florete-tmp"; chmod "$2" "$1.florete-tmp"; mv -f "$1.florete-tmp" "$1"; }`,
  ];
  for (const sub of ["certs", "keys", "secrets"]) {
    lines.push(`mkdir -p -m ${sub === "certs" ? "755" : "700"} ${q(posix.join(configDir, sub))}`);
  }
  for (const f of files) {
    lines.push(`w ${q(f.path)} ${f.mode.toString(8)} <<'FLORETE_EOF'`);
    lines.push(...chunk(btoa(binaryString(new TextEncoder().encode(f.data))), 76));
    lines.push("FLORETE_EOF");
  }
  const keepSet = keep.map(q).join(" ");
  lines.push(
    `cd ${q(configDir)}`,
    `for f in certs/* keys/* secrets/*; do [ -f "$f" ] || continue; keep=0; for k in ${keepSet}; do [ "$f" = "$k" ] && keep=1; done; [ $keep = 1 ] || rm -f "$f"; done`,
    "",
  );
  return lines.join("\n");
}

function binaryString(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) {
    s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  }
  return s;
}

function chunk(s: string, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < s.length; i += n) out.push(s.slice(i, i + n));
  return out;
}

export type Action = "ensure-running" | "restart" | "reload";

/** Start/restart/reload under the node's supervisor. `--init none` keeps a pid file and runs
 * the agent detached (setsid, no terminal), for hosts without an init system and for tests. */
export function controlScript(init: Init, paths: NodePaths, action: Action): string {
  const lines = ["set -eu"];
  if (init === "systemd") {
    if (paths.sysctl) {
      // Raises net.core.rmem_max/wmem_max before flor starts. A host that refuses (a
      // container) still runs flor, which then warns with udp.buffer_small.
      const f = q(paths.sysctl);
      lines.push(
        `sysctl -q -p ${f} >/dev/null 2>&1 || echo "florete: could not apply ${f}" >&2`,
      );
    }
    lines.push("systemctl daemon-reload", "systemctl enable --quiet flor.service");
    if (action === "restart") lines.push("systemctl restart flor.service");
    else if (action === "reload") lines.push("systemctl reload-or-restart flor.service");
    else lines.push("systemctl start flor.service");
  } else if (init === "launchd") {
    const unit = q(paths.unit!);
    lines.push(
      `mkdir -p ${q(posix.dirname(paths.log))}`,
      action === "restart"
        ? `launchctl bootout system ${unit} 2>/dev/null || true; launchctl bootstrap system ${unit}`
        : action === "reload"
        ? `launchctl kill HUP system/dev.florete.flor`
        : `launchctl print system/dev.florete.flor >/dev/null 2>&1 || launchctl bootstrap system ${unit}`,
    );
  } else {
    const pidFile = q(paths.pidFile);
    lines.push(
      `pid=$(cat ${pidFile} 2>/dev/null || true)`,
      `alive() { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }`,
      `start() { mkdir -p ${q(paths.state)} ${q(posix.dirname(paths.log))}; cd ${
        q(paths.state)
      }; setsid ${q(paths.binary)} run --config ${q(paths.configFile)} >>${
        q(paths.log)
      } 2>&1 </dev/null & echo $! > ${pidFile}; }`,
      `stop() { if alive; then kill -TERM "$pid"; i=0; while alive && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; alive && kill -KILL "$pid" || true; fi; }`,
    );
    if (action === "restart") lines.push("stop", "start");
    else if (action === "reload") lines.push(`if alive; then kill -HUP "$pid"; else start; fi`);
    else lines.push("alive || start");
  }
  lines.push("");
  return lines.join("\n");
}

/** Where a node's releases live: the running one in `bin` (its `flor` is what the service
 * starts), the one before it in `bin.previous` for rollback, an upload staged beside them. */
export function releaseDirs(paths: NodePaths) {
  return {
    current: paths.bin,
    previous: `${paths.bin}.previous`,
    staged: `${paths.bin}.new`,
    failed: `${paths.bin}.failed`,
    upload: `${paths.bin}.upload`,
    /** sha256 of the release file the current directory came from (idempotent enroll). */
    stamp: posix.join(paths.bin, ".release.sha256"),
  };
}

/** Unpacks an uploaded release (a .tar.gz archive or a single flor executable) into a fresh
 * directory and swaps it in, keeping the running release as `previous`. */
export function installReleaseScript(
  paths: NodePaths,
  kind: "archive" | "binary",
  sha256: string,
): string {
  const d = releaseDirs(paths);
  return [
    "set -eu",
    `rm -rf ${q(d.staged)}`,
    `mkdir -p ${q(d.staged)}`,
    kind === "archive"
      ? `tar -xzf ${q(d.upload)} -C ${q(d.staged)} --strip-components=1`
      : `mv ${q(d.upload)} ${q(posix.join(d.staged, "flor"))}`,
    `chmod 755 ${q(posix.join(d.staged, "flor"))}`,
    `echo ${sha256} > ${q(posix.join(d.staged, ".release.sha256"))}`,
    `rm -f ${q(d.upload)}`,
    `if [ -d ${q(d.current)} ]; then rm -rf ${q(d.previous)}; mv ${q(d.current)} ${
      q(d.previous)
    }; fi`,
    `mv ${q(d.staged)} ${q(d.current)}`,
    "",
  ].join("\n");
}

/** Puts the previous release back (the failed one is kept for a look); exits 3 if there is
 * no previous release to go back to. */
export function rollbackScript(paths: NodePaths): string {
  const d = releaseDirs(paths);
  return [
    "set -eu",
    `[ -d ${q(d.previous)} ] || exit 3`,
    `rm -rf ${q(d.failed)}`,
    `mv ${q(d.current)} ${q(d.failed)}`,
    `mv ${q(d.previous)} ${q(d.current)}`,
    "",
  ].join("\n");
}

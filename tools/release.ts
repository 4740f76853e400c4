/**
 * What a release is made of, shared by `deno task compile` and `deno task dist`: the targets,
 * the three executables with the permissions and flags each runs with (nothing more), and the
 * build stamp that `--version` prints.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AGENT_V8_FLAGS_ARG } from "../lib/memory.ts";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** The Deno the project is pinned to (README, .ci/run); release runtimes are this version. */
export const PINNED_DENO = "2.9.6";

export interface ReleaseTarget {
  /** `deno compile --target`. */
  triple: string;
  /** npm package holding this target's Deno runtime (the `deno` package's own dependency). */
  npmPackage: string;
  windows: boolean;
}

export const TARGETS: Record<string, ReleaseTarget> = {
  "linux-x64": {
    triple: "x86_64-unknown-linux-gnu",
    npmPackage: "@deno/linux-x64-glibc",
    windows: false,
  },
  "linux-arm64": {
    triple: "aarch64-unknown-linux-gnu",
    npmPackage: "@deno/linux-arm64-glibc",
    windows: false,
  },
  "darwin-x64": { triple: "x86_64-apple-darwin", npmPackage: "@deno/darwin-x64", windows: false },
  "darwin-arm64": {
    triple: "aarch64-apple-darwin",
    npmPackage: "@deno/darwin-arm64",
    windows: false,
  },
  "windows-x64": { triple: "x86_64-pc-windows-msvc", npmPackage: "@deno/win32-x64", windows: true },
};

export interface Executable {
  name: "flor" | "florctl" | "flor-gw";
  entry: string;
  /** Permissions and runtime flags, as `deno run`/`deno compile` arguments. */
  flags: string[];
}

/** The agents run with every permission. They call libc through Deno.dlopen (UDP buffer sizes,
 * TCP resets: lib/socket_options.ts), and FFI is full access whatever else is denied; and
 * Deno 2.9.6 lets only --allow-all read /proc/net, /proc/self/fd and /proc/self/status, which
 * the agents need for flor_udp_receive_errors_total, flor_open_fds and finding their sockets.
 * Narrower flags would only hide those metrics in release builds. */
const AGENT_FLAGS = [
  "--unstable-net",
  "--allow-all",
  AGENT_V8_FLAGS_ARG,
];

export const EXECUTABLES: Executable[] = [
  {
    name: "flor",
    entry: "agent/main.ts",
    flags: AGENT_FLAGS,
  },
  {
    name: "florctl",
    entry: "ctl/main.ts",
    flags: [
      "--unstable-net",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-run",
    ],
  },
  { name: "flor-gw", entry: "gateway/main.ts", flags: AGENT_FLAGS },
];

export function gitCommit(): string {
  const out = new Deno.Command("git", { args: ["rev-parse", "--short=12", "HEAD"], cwd: ROOT })
    .outputSync();
  return out.success ? new TextDecoder().decode(out.stdout).trim() : "unknown";
}

/** Targets named by `--target T` arguments (all when none), or an error naming the bad one. */
export function parseTargets(args: string[]): string[] {
  const wanted = args.flatMap((a, i, all) => a === "--target" ? [all[i + 1]] : []);
  const targets = wanted.length ? wanted : Object.keys(TARGETS);
  for (const t of targets) {
    if (!TARGETS[t]) {
      throw new Error(`unknown target ${t}; use one of ${Object.keys(TARGETS).join(", ")}`);
    }
  }
  return targets;
}

/** parseTargets for a command line: a bad target ends the process with its message, code 2. */
export function targetsOrExit(args: string[]): string[] {
  try {
    return parseTargets(args);
  } catch (e) {
    console.error((e as Error).message);
    Deno.exit(2);
  }
}

export function stampPath(): string {
  return join(ROOT, "dist", "build_info.json");
}

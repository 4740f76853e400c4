/**
 * `deno task compile [--target T]...`: single-file executables of flor, florctl (and flor-gw
 * once gateway/main.ts exists) for each release target, into dist/compile/<target>/.
 *
 * `deno compile` needs Deno's runtime (denort) for each target. It downloads it from the
 * internet, or uses the file named by DENORT_BIN (which must be the denort of the one target
 * you build). Machines without internet access (this project's CI) cannot run this task;
 * `deno task dist` is the offline build.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

export const TARGETS: Record<string, string> = {
  "linux-x64": "x86_64-unknown-linux-gnu",
  "linux-arm64": "aarch64-unknown-linux-gnu",
  "darwin-x64": "x86_64-apple-darwin",
  "darwin-arm64": "aarch64-apple-darwin",
  "windows-x64": "x86_64-pc-windows-msvc",
};

/** Entry points and the permissions each executable runs with (nothing more). */
export const EXECUTABLES = [
  {
    name: "flor",
    entry: "agent/main.ts",
    permissions: [
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys",
      "--v8-flags=--expose-gc", // lib/memory.ts
    ],
  },
  {
    name: "florctl",
    entry: "ctl/main.ts",
    permissions: ["--allow-net", "--allow-read", "--allow-write", "--allow-env", "--allow-run"],
  },
  {
    name: "flor-gw",
    entry: "gateway/main.ts",
    permissions: [
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys",
      "--v8-flags=--expose-gc",
    ],
  },
];

function gitCommit(): string {
  const out = new Deno.Command("git", { args: ["rev-parse", "--short=12", "HEAD"], cwd: ROOT })
    .outputSync();
  return out.success ? new TextDecoder().decode(out.stdout).trim() : "unknown";
}

async function exists(path: string) {
  return await Deno.stat(path).then(() => true, () => false);
}

if (import.meta.main) {
  const wanted = Deno.args.flatMap((a, i, all) => a === "--target" ? [all[i + 1]] : []);
  const targets = wanted.length ? wanted : Object.keys(TARGETS);
  for (const t of targets) {
    if (!TARGETS[t]) {
      console.error(`unknown target ${t}; use one of ${Object.keys(TARGETS).join(", ")}`);
      Deno.exit(2);
    }
  }
  if (Deno.env.get("DENORT_BIN") && targets.length !== 1) {
    console.error("DENORT_BIN is the runtime of one target: pass exactly one --target with it");
    Deno.exit(2);
  }
  const commit = gitCommit();
  const stamp = join(ROOT, "dist", "build_info.json");
  await Deno.mkdir(join(ROOT, "dist"), { recursive: true });
  await Deno.writeTextFile(stamp, JSON.stringify({ commit }) + "\n");
  let failed = 0;
  for (const t of targets) {
    for (const exe of EXECUTABLES) {
      if (!await exists(join(ROOT, exe.entry))) {
        console.log(`skip ${exe.name}: ${exe.entry} does not exist yet`);
        continue;
      }
      const suffix = t.startsWith("windows") ? ".exe" : "";
      const output = join(ROOT, "dist", "compile", t, exe.name + suffix);
      const args = [
        "compile",
        "--unstable-net",
        ...exe.permissions,
        "--config",
        join(ROOT, "deno.json"),
        "--include",
        stamp,
        "--target",
        TARGETS[t],
        "--output",
        output,
        join(ROOT, exe.entry),
      ];
      console.log(`deno ${args.join(" ")}`);
      const r = await new Deno.Command(Deno.execPath(), {
        args,
        stdout: "inherit",
        stderr: "inherit",
      })
        .output();
      if (!r.success) {
        failed++;
        console.error(
          `compile of ${exe.name} for ${t} failed: deno compile needs the denort runtime for ` +
            `${TARGETS[t]} (internet access, or DENORT_BIN=/path/to/denort with --target ${t})`,
        );
      }
    }
  }
  Deno.exit(failed ? 1 : 0);
}

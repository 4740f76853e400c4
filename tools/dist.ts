/**
 * `deno task dist [--target T]...`: release archives built without internet access beyond
 * the npm registry.
 *
 * For each target it takes Deno's runtime from its npm package (the same packages the `deno`
 * npm package installs, at the pinned version), bundles each entry point into one JavaScript
 * file with `deno bundle`, and writes
 *
 *   dist/florete-<version>-<target>/
 *     flor, florctl, flor-gw        launchers (.cmd on Windows): the bundled runtime on the
 *                                   bundled code, with each executable's permissions and flags
 *     runtime/deno[.exe]            Deno <pinned> for that target
 *     lib/<name>.js, lib/build_info.json
 *   dist/florete-<version>-<target>.tar.gz   (.zip for Windows)
 *   dist/SHA256SUMS
 *
 * Launchers use only the shell and never a Deno found on PATH.
 */
import { zipSync } from "fflate";
import { basename, join } from "node:path";
import { sha256Hex } from "../lib/sha256.ts";
import { exists } from "../lib/file_exists.ts";
import { VERSION } from "../lib/version.ts";
import { releaseArchiveName, releaseDirName } from "../lib/platform.ts";
import {
  type Executable,
  EXECUTABLES,
  gitCommit,
  PINNED_DENO,
  type ReleaseTarget,
  ROOT,
  TARGETS,
  targetsOrExit,
} from "./release.ts";

const DIST = join(ROOT, "dist");
const CACHE = join(DIST, ".cache");

/** Flags every launcher adds: no config or lock file from the working directory, no update
 * check, no prompts (a service has no terminal to ask on). */
const RUNTIME_FLAGS = ["--no-config", "--no-lock", "--no-prompt"];

async function run(cmd: string, args: string[], cwd = ROOT) {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** The target's Deno executable, from its npm package (cached in dist/.cache). */
async function runtimeFor(t: ReleaseTarget): Promise<string> {
  const dir = join(CACHE, `${t.npmPackage.replace("/", "-")}-${PINNED_DENO}`);
  const exe = join(dir, "package", t.windows ? "deno.exe" : "deno");
  if (await exists(exe)) return exe;
  await Deno.mkdir(dir, { recursive: true });
  const packed = (await run("npm", [
    "pack",
    `${t.npmPackage}@${PINNED_DENO}`,
    "--pack-destination",
    dir,
    "--silent",
  ])).trim().split("\n").pop()!;
  await run("tar", ["-xzf", join(dir, basename(packed)), "-C", dir]);
  if (!await exists(exe)) throw new Error(`${t.npmPackage}@${PINNED_DENO} has no ${exe}`);
  return exe;
}

async function bundleAll(into: string) {
  await Deno.mkdir(into, { recursive: true });
  for (const exe of EXECUTABLES) {
    await run(Deno.execPath(), [
      "bundle",
      "--platform=deno",
      "--config",
      join(ROOT, "deno.json"),
      "-o",
      join(into, `${exe.name}.js`),
      join(ROOT, exe.entry),
    ]);
  }
}

/** POSIX sh launcher: finds its own directory from $0 with parameter expansion only. */
export function shLauncher(exe: Executable): string {
  const flags = [...RUNTIME_FLAGS, ...exe.flags].join(" ");
  return [
    "#!/bin/sh",
    `# ${exe.name}: runs the Deno runtime shipped in this directory on the bundled code.`,
    'case "$0" in */*) here=${0%/*} ;; *) here=. ;; esac',
    "DENO_NO_UPDATE_CHECK=1 DENO_NO_PACKAGE_JSON=1",
    "export DENO_NO_UPDATE_CHECK DENO_NO_PACKAGE_JSON",
    `exec "$here/runtime/deno" run ${flags} "$here/lib/${exe.name}.js" "$@"`,
    "",
  ].join("\n");
}

/** Windows launcher: %~dp0 is the launcher's own directory. */
export function cmdLauncher(exe: Executable): string {
  const flags = [...RUNTIME_FLAGS, ...exe.flags].join(" ");
  return [
    "@echo off",
    `rem ${exe.name}: runs the Deno runtime shipped in this directory on the bundled code.`,
    "set DENO_NO_UPDATE_CHECK=1",
    "set DENO_NO_PACKAGE_JSON=1",
    `"%~dp0runtime\\deno.exe" run ${flags} "%~dp0lib\\${exe.name}.js" %*`,
    "",
  ].join("\r\n");
}

async function sha256File(path: string): Promise<string> {
  return sha256Hex(await Deno.readFile(path));
}

/** Adds a directory to a zip's file map, keeping the top directory name. */
async function zipTree(root: string, top: string, out: Record<string, Uint8Array>) {
  for await (const e of Deno.readDir(root)) {
    const path = join(root, e.name);
    const name = `${top}/${e.name}`;
    if (e.isDirectory) await zipTree(path, name, out);
    else out[name] = await Deno.readFile(path);
  }
}

export async function buildTarget(name: string, bundles: string, commit: string) {
  const t = TARGETS[name];
  const dirName = releaseDirName(VERSION, name);
  const dir = join(DIST, dirName);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(join(dir, "runtime"), { recursive: true });
  await Deno.mkdir(join(dir, "lib"), { recursive: true });
  const runtime = await runtimeFor(t);
  const runtimeOut = join(dir, "runtime", t.windows ? "deno.exe" : "deno");
  await Deno.copyFile(runtime, runtimeOut);
  if (!t.windows) await Deno.chmod(runtimeOut, 0o755);
  for (const exe of EXECUTABLES) {
    await Deno.copyFile(join(bundles, `${exe.name}.js`), join(dir, "lib", `${exe.name}.js`));
    if (t.windows) {
      await Deno.writeTextFile(join(dir, `${exe.name}.cmd`), cmdLauncher(exe));
    } else {
      await Deno.writeTextFile(join(dir, exe.name), shLauncher(exe), { mode: 0o755 });
      await Deno.chmod(join(dir, exe.name), 0o755);
    }
  }
  await Deno.writeTextFile(
    join(dir, "lib", "build_info.json"),
    JSON.stringify({ version: VERSION, commit, deno: PINNED_DENO, target: name }) + "\n",
  );
  const archive = join(DIST, releaseArchiveName(VERSION, name));
  if (t.windows) {
    const files: Record<string, Uint8Array> = {};
    await zipTree(dir, dirName, files);
    await Deno.writeFile(archive, zipSync(files, { level: 6 }));
  } else {
    await run("tar", ["-czf", archive, "-C", DIST, dirName]);
  }
  return archive;
}

async function writeSums() {
  const lines: string[] = [];
  for await (const e of Deno.readDir(DIST)) {
    if (/^florete-.*\.(tar\.gz|zip)$/.test(e.name)) {
      lines.push(`${await sha256File(join(DIST, e.name))}  ${e.name}`);
    }
  }
  lines.sort((a, b) => a.slice(66).localeCompare(b.slice(66)));
  await Deno.writeTextFile(join(DIST, "SHA256SUMS"), lines.join("\n") + "\n");
}

if (import.meta.main) {
  const targets = targetsOrExit(Deno.args);
  if (Deno.version.deno !== PINNED_DENO) {
    console.error(`warning: bundling with Deno ${Deno.version.deno}; releases pin ${PINNED_DENO}`);
  }
  const commit = gitCommit();
  const bundles = join(DIST, ".build", commit);
  console.log(`bundling ${EXECUTABLES.map((e) => e.name).join(", ")} (commit ${commit})`);
  await bundleAll(bundles);
  for (const t of targets) {
    const archive = await buildTarget(t, bundles, commit);
    const size = (await Deno.stat(archive)).size;
    console.log(`${basename(archive)}  ${(size / 1048576).toFixed(1)} MiB`);
  }
  await writeSums();
  console.log(`dist/SHA256SUMS updated`);
}

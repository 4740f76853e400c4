/**
 * Release version of the three executables, and the git commit they were built from:
 * release builds carry dist/build_info.json (written by `deno task compile` / `dist`);
 * a source checkout asks git.
 */
export const VERSION = "0.1.0";

let cached: string | undefined;

export function commit(): string {
  return cached ??= stampedCommit() ?? gitCommit();
}

/** Bundled releases (`deno task dist`) carry build_info.json next to the bundle; compiled
 * ones (`deno task compile`) embed dist/build_info.json. */
function stampedCommit(): string | undefined {
  for (const rel of ["./build_info.json", "../dist/build_info.json"]) {
    try {
      const info = JSON.parse(Deno.readTextFileSync(new URL(rel, import.meta.url)));
      if (typeof info.commit === "string") return info.commit;
    } catch {
      // not this kind of build
    }
  }
  return undefined;
}

function gitCommit(): string {
  try {
    const dir = new URL("..", import.meta.url);
    if (dir.protocol !== "file:") return "unknown";
    const out = new Deno.Command("git", {
      args: ["rev-parse", "--short=12", "HEAD"],
      cwd: dir,
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : "unknown";
  } catch {
    return "unknown";
  }
}

export function versionLine(program: string): string {
  return `${program} ${VERSION} (commit ${commit()})`;
}

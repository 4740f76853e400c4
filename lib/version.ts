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

function stampedCommit(): string | undefined {
  try {
    const info = JSON.parse(
      Deno.readTextFileSync(new URL("../dist/build_info.json", import.meta.url)),
    );
    return typeof info.commit === "string" ? info.commit : undefined;
  } catch {
    return undefined;
  }
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

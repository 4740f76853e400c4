/**
 * Release version of the three executables. The git commit is stamped into release builds
 * (`deno task compile` / `dist` set FLORETE_COMMIT); from a source checkout it is asked of git.
 */
export const VERSION = "0.1.0";

export function commit(): string {
  const stamped = Deno.env.get("FLORETE_COMMIT");
  if (stamped) return stamped;
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

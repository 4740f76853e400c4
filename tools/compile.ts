/**
 * `deno task compile [--target T]...`: single-file executables of flor, florctl and flor-gw
 * for each release target, into dist/compile/<target>/.
 *
 * `deno compile` needs Deno's runtime (denort) for each target. It downloads it from the
 * internet, or uses the file named by DENORT_BIN (which must be the denort of the one target
 * you build). Machines without internet access (this project's CI) cannot run this task;
 * `deno task dist` is the offline build.
 */
import { join } from "node:path";
import { EXECUTABLES, gitCommit, ROOT, stampPath, TARGETS, targetsOrExit } from "./release.ts";

if (import.meta.main) {
  const targets = targetsOrExit(Deno.args);
  if (Deno.env.get("DENORT_BIN") && targets.length !== 1) {
    console.error("DENORT_BIN is the runtime of one target: pass exactly one --target with it");
    Deno.exit(2);
  }
  await Deno.mkdir(join(ROOT, "dist"), { recursive: true });
  await Deno.writeTextFile(stampPath(), JSON.stringify({ commit: gitCommit() }) + "\n");
  let failed = 0;
  for (const t of targets) {
    for (const exe of EXECUTABLES) {
      const suffix = TARGETS[t].windows ? ".exe" : "";
      const output = join(ROOT, "dist", "compile", t, exe.name + suffix);
      const args = [
        "compile",
        ...exe.flags,
        "--config",
        join(ROOT, "deno.json"),
        "--include",
        stampPath(),
        "--target",
        TARGETS[t].triple,
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
            `${
              TARGETS[t].triple
            } (internet access, or DENORT_BIN=/path/to/denort with --target ${t})`,
        );
      }
    }
  }
  // The stamp is only for the binaries: a source checkout asks git (lib/version.ts).
  await Deno.remove(stampPath()).catch(() => {});
  Deno.exit(failed ? 1 : 0);
}

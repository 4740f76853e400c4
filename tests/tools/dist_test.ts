import assert from "node:assert/strict";
import { join } from "node:path";
import { cmdLauncher, shLauncher } from "../../tools/dist.ts";
import { EXECUTABLES, parseTargets, TARGETS } from "../../tools/release.ts";

const flor = EXECUTABLES.find((e) => e.name === "flor")!;

Deno.test("dist: the sh launcher uses only the shell and the runtime beside it", () => {
  const text = shLauncher(flor);
  assert.ok(text.startsWith("#!/bin/sh\n"));
  const commands = text.split("\n").filter((l) => l && !l.startsWith("#"));
  // parameter expansion, assignments, export and exec: no dirname, readlink or PATH lookup
  for (const line of commands) {
    assert.match(line, /^(case |DENO_|export |exec "\$here\/runtime\/deno" )/, line);
  }
  assert.match(text, /--unstable-net/);
  assert.match(text, /--v8-flags=--expose-gc,--max-semi-space-size=1 /);
  assert.match(text, /--no-config --no-lock --no-prompt/);
  assert.match(text, /"\$here\/lib\/flor\.js" "\$@"$/m);
});

Deno.test("dist: the Windows launcher runs deno.exe from its own directory", () => {
  const text = cmdLauncher(flor);
  assert.ok(text.includes("\r\n"), "cmd files use CRLF");
  assert.match(text, /^"%~dp0runtime\\deno\.exe" run .* "%~dp0lib\\flor\.js" %\*\r$/m);
});

Deno.test("dist: the agents run with every permission, florctl with what it names", () => {
  const byName = Object.fromEntries(EXECUTABLES.map((e) => [e.name, e.flags]));
  // FFI (lib/socket_options.ts) is full access anyway, and only --allow-all reads /proc.
  assert.ok(byName.flor.includes("--allow-all"));
  assert.ok(byName["flor-gw"].includes("--allow-all"));
  assert.ok(byName.florctl.includes("--allow-run"));
  assert.ok(!byName.florctl.includes("--allow-all"));
});

Deno.test("dist: flor's launcher passes every argument through unchanged", async () => {
  const dir = await Deno.makeTempDir({ prefix: "florete-launcher-" });
  try {
    // A stand-in runtime that prints the arguments the launcher gives it, one per line.
    await Deno.mkdir(join(dir, "runtime"));
    await Deno.writeTextFile(join(dir, "runtime", "deno"), '#!/bin/sh\nprintf "%s\\n" "$@"\n', {
      mode: 0o755,
    });
    await Deno.writeTextFile(join(dir, "flor"), shLauncher(flor), { mode: 0o755 });
    const out = await new Deno.Command(join(dir, "flor"), {
      args: ["run", "--config", "my flor.yaml"],
      stdout: "piped",
    }).output();
    const args = new TextDecoder().decode(out.stdout).trim().split("\n");
    assert.ok(args.includes("--allow-all"), args.join(" "));
    assert.deepEqual(args.slice(-4), [
      join(dir, "lib", "flor.js"),
      "run",
      "--config",
      "my flor.yaml",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dist: targets parse and unknown ones are named", () => {
  assert.deepEqual(parseTargets([]), Object.keys(TARGETS));
  assert.deepEqual(parseTargets(["--target", "linux-arm64"]), ["linux-arm64"]);
  assert.throws(() => parseTargets(["--target", "solaris-sparc"]), /unknown target solaris-sparc/);
});

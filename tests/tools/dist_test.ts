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
  assert.match(text, /--v8-flags=--expose-gc/);
  assert.match(text, /--no-config --no-lock --no-prompt/);
  assert.match(text, /"\$here\/lib\/flor\.js" "\$@"$/m);
});

Deno.test("dist: the Windows launcher runs deno.exe from its own directory", () => {
  const text = cmdLauncher(flor);
  assert.ok(text.includes("\r\n"), "cmd files use CRLF");
  assert.match(text, /^"%~dp0runtime\\deno\.exe" run .* "%~dp0lib\\flor\.js" %\*\r$/m);
});

Deno.test("dist: florctl may run ssh; the agents may not", () => {
  const byName = Object.fromEntries(EXECUTABLES.map((e) => [e.name, e.flags]));
  assert.ok(byName.florctl.includes("--allow-run"));
  assert.ok(!byName.flor.includes("--allow-run"));
  assert.ok(!byName["flor-gw"].includes("--allow-run"));
  assert.ok(!byName.flor.includes("--allow-all"));
});

Deno.test("dist: flor's launcher lets only join and leave run the service manager", async () => {
  const dir = await Deno.makeTempDir({ prefix: "florete-launcher-" });
  try {
    // A stand-in runtime that prints the arguments the launcher gives it, one per line.
    await Deno.mkdir(join(dir, "runtime"));
    await Deno.writeTextFile(join(dir, "runtime", "deno"), '#!/bin/sh\nprintf "%s\\n" "$@"\n', {
      mode: 0o755,
    });
    await Deno.writeTextFile(join(dir, "flor"), shLauncher(flor, "linux"), { mode: 0o755 });
    const argsOf = async (...args: string[]) => {
      const out = await new Deno.Command(join(dir, "flor"), { args, stdout: "piped" }).output();
      return new TextDecoder().decode(out.stdout).trim().split("\n");
    };
    const run = await argsOf("run", "--config", "my flor.yaml");
    assert.ok(!run.some((a) => a.startsWith("--allow-run")), run.join(" "));
    assert.deepEqual(run.slice(-4), [
      join(dir, "lib", "flor.js"),
      "run",
      "--config",
      "my flor.yaml",
    ]);
    for (const sub of ["join", "leave"]) {
      const args = await argsOf(sub, "x");
      assert.equal(
        args.filter((a) => a.startsWith("--allow-run")).join(),
        "--allow-run=systemctl,kill",
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.match(shLauncher(flor, "darwin"), /extra="--allow-run=launchctl,kill"/);
  assert.match(
    cmdLauncher(flor),
    /if \/i "%~1"=="leave" set "extra=--allow-run=schtasks,taskkill"/,
  );
  const gw = EXECUTABLES.find((e) => e.name === "flor-gw")!;
  assert.doesNotMatch(shLauncher(gw) + cmdLauncher(gw), /allow-run|extra/);
});

Deno.test("dist: targets parse and unknown ones are named", () => {
  assert.deepEqual(parseTargets([]), Object.keys(TARGETS));
  assert.deepEqual(parseTargets(["--target", "linux-arm64"]), ["linux-arm64"]);
  assert.throws(() => parseTargets(["--target", "solaris-sparc"]), /unknown target solaris-sparc/);
});

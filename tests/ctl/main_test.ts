/** florctl's one way to fail: commands throw CtlError, ctl/main.ts turns it into stderr and
 * the exit code (the README's table), checked in process and through the real CLI. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError } from "../../lib/config_problems.ts";
import { buildProgram, reportFailure } from "../../ctl/main.ts";
import { CtlError, EXIT_FAILED, EXIT_OK } from "../../ctl/support/ctl_error.ts";
import { florctl, florctlOk } from "../e2e/harness.ts";

/** What reportFailure prints to stderr for `e`, and the exit code it returns. */
function report(e: unknown): { code: number; stderr: string[] } {
  const stderr: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => stderr.push(args.join(" "));
  try {
    return { code: reportFailure(e), stderr };
  } finally {
    console.error = original;
  }
}

Deno.test("florctl main: every command is registered", () => {
  const names = (c: ReturnType<typeof buildProgram>, prefix = ""): string[] =>
    c.commands.flatMap((sub) => {
      const name = `${prefix}${sub.name()}`;
      return sub.commands.length ? names(sub, `${name} `) : [name];
    });
  assert.deepEqual(names(buildProgram()).sort(), [
    "access",
    "bundle gateway",
    "bundle node",
    "bundle user",
    "check",
    "deploy",
    "doctor",
    "enroll node",
    "enroll user",
    "gateway add",
    "gateway client add",
    "init",
    "node add",
    "revoke",
    "rotate",
    "service add",
    "status",
    "user add",
  ]);
});

Deno.test("florctl main: a CtlError is `florctl: <message>` on stderr and its exit code", () => {
  assert.deepEqual(report(new CtlError("node n9 is not in cluster.yaml")), {
    code: EXIT_FAILED,
    stderr: ["florctl: node n9 is not in cluster.yaml"],
  });
  assert.deepEqual(report(new CtlError("x", { exitCode: 3 })).code, 3);
});

Deno.test("florctl main: a failure the command already reported adds nothing to stderr", () => {
  assert.deepEqual(report(new CtlError("1 of 2 node(s) unhealthy", { reported: true })), {
    code: EXIT_FAILED,
    stderr: [],
  });
});

Deno.test("florctl main: config errors print as they are, anything else is named", () => {
  const problem = {
    file: "cluster.yaml",
    line: 3,
    column: 1,
    path: "",
    message: "bad",
    severity: "error" as const,
  };
  assert.deepEqual(report(new ConfigError([problem])), {
    code: EXIT_FAILED,
    stderr: ["cluster.yaml:3:1: bad"],
  });
  assert.deepEqual(report(new Error("boom")), { code: EXIT_FAILED, stderr: ["florctl: boom"] });
  // commander printed the usage already and says which code.
  assert.deepEqual(report({ code: "commander.unknownOption", exitCode: 1 }), {
    code: 1,
    stderr: [],
  });
  assert.deepEqual(report({ code: "commander.helpDisplayed", exitCode: 0 }), {
    code: EXIT_OK,
    stderr: [],
  });
});

Deno.test("florctl: exit codes of the real CLI, per the README's table", async () => {
  const dir = await Deno.makeTempDir({ prefix: "florete-exit-" });
  try {
    // Usage: commander's message, exit 1; help and version exit 0.
    const usage = await florctl(["frob"]);
    assert.equal(usage.code, EXIT_FAILED);
    assert.match(usage.stderr, /unknown command 'frob'/);
    assert.equal((await florctl(["--help"])).code, EXIT_OK);
    assert.equal((await florctl(["--version"])).code, EXIT_OK);

    // A refused command: one `florctl:` line saying what to do.
    const missing = await florctl(["status", "--dir", join(dir, "nowhere")]);
    assert.equal(missing.code, EXIT_FAILED);
    assert.match(missing.stderr, /^florctl: .*cluster\.yaml not found: run `florctl init/);

    await florctlOk(["init", "acme", "--dir", dir]);
    // A UDP port nothing listens on: the node is unreachable.
    const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const port = (socket.addr as Deno.NetAddr).port;
    socket.close();
    await florctlOk(["node", "add", "n1", "--endpoint", `127.0.0.1:${port}`, "--dir", dir]);
    assert.equal((await florctl(["check", "--dir", dir])).code, EXIT_OK);

    // Reports with a failure in them: printed by the command, exit 1, nothing more.
    const status = await florctl(["status", "--dir", dir]);
    assert.equal(status.code, EXIT_FAILED, status.stderr);
    assert.match(status.stdout, /n1\s+DOWN[\s\S]*1 of 1 node\(s\) unhealthy/);
    assert.equal(status.stderr, "");
    const doctor = await florctl(["doctor", "--dir", dir]);
    assert.equal(doctor.code, EXIT_FAILED, doctor.stderr);
    assert.match(doctor.stdout, /FAIL\s+node_reachable\s+n1:/);
    assert.equal(doctor.stderr, "");

    const file = join(dir, "cluster.yaml");
    await Deno.writeTextFile(file, (await Deno.readTextFile(file)) + "bogus: 1\n");
    const check = await florctl(["check", "--dir", dir]);
    assert.equal(check.code, EXIT_FAILED);
    assert.match(check.stderr, /cluster\.yaml:\d+:\d+: .*bogus[\s\S]*\n1 error\(s\) in .*\n$/);
    assert.doesNotMatch(check.stderr, /florctl:/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

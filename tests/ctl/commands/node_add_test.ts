/** `florctl node add` through the real CLI: an ssh target with shell syntax never reaches
 * cluster.yaml (issue 11 item 10). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { florctl, florctlOk } from "../../e2e/harness.ts";

Deno.test("florctl node add: an ssh target with shell syntax is refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "florete-node-add-" });
  const pwned = join(dir, "pwned");
  try {
    await florctlOk(["init", "acme", "--dir", dir]);
    const before = await Deno.readTextFile(join(dir, "cluster.yaml"));
    const r = await florctl([
      "node",
      "add",
      "n3",
      "--endpoint",
      "127.0.0.1:7103",
      "--ssh",
      "root@$(touch${IFS}pwned)",
      "--dir",
      dir,
    ], { cwd: dir });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /ssh target 'root@\$\(touch\$\{IFS\}pwned\)': the host may contain/);
    assert.equal(await Deno.readTextFile(join(dir, "cluster.yaml")), before, "file unchanged");
    await assert.rejects(Deno.stat(pwned), Deno.errors.NotFound);

    // A hand-edited cluster.yaml with the same target fails `florctl check` at its line.
    await Deno.writeTextFile(
      join(dir, "cluster.yaml"),
      before.replace(
        /nodes:.*\n/,
        'nodes:\n  n3:\n    endpoint: 127.0.0.1:7103\n    ssh: "root@$(touch${IFS}pwned)"\n',
      ),
    );
    const c = await florctl(["check", "--dir", dir]);
    assert.equal(c.code, 1, c.stdout + c.stderr);
    assert.match(c.stderr, /cluster\.yaml:\d+.*nodes\.n3\.ssh.*may contain only/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

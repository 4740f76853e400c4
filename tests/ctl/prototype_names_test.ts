/**
 * Names that are also properties of every JavaScript object (`constructor`, `toString`,
 * `__proto__`): cluster.yaml sections are plain objects, so a lookup by `section[name]` finds
 * them on an empty map. Through the real CLI, each command must treat them as the names
 * they are.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { florctl, florctlOk, serviceAddArgs } from "../e2e/harness.ts";

async function withCluster(body: (ok: Run, run: Run) => Promise<void>) {
  const root = await Deno.makeTempDir({ prefix: "florete-names-" });
  const dir = join(root, "cluster");
  const run = (...args: string[]) => florctl([...args, "--dir", dir]);
  const ok = (...args: string[]) => florctlOk([...args, "--dir", dir]);
  try {
    await ok("init", "acme");
    await body(ok, run);
  } finally {
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}
type Run = (...args: string[]) => Promise<any>;

Deno.test("florctl: user, node and service named constructor are added, not 'already exist'", async () => {
  await withCluster(async (ok, run) => {
    assert.match(await ok("user", "add", "constructor"), /added user constructor/);
    assert.match(
      await ok("node", "add", "constructor", "--endpoint", "127.0.0.1:7101"),
      /added node constructor/,
    );
    assert.match(
      await ok(
        ...serviceAddArgs("constructor", "constructor", "127.0.0.1:8080", "user:constructor"),
      ),
      /added service constructor/,
    );
    await ok("check");
    // A second add is the real duplicate.
    const again = await run("user", "add", "constructor");
    assert.equal(again.code, 1);
    assert.match(again.stderr, /user constructor already exists/);
  });
});

Deno.test("florctl: commands naming a missing node toString say it is missing", async () => {
  await withCluster(async (_ok, run) => {
    const enroll = await run("enroll", "node", "toString");
    assert.equal(enroll.code, 1, enroll.stderr);
    assert.match(enroll.stderr, /node toString is not in .*cluster\.yaml/);
    const deploy = await run("deploy", "--node", "toString");
    assert.notEqual(deploy.code, 0);
    assert.match(deploy.stderr, /no node toString/);
    const gw = await run("gateway", "client", "add", "constructor", "printer", "--services", "x");
    assert.equal(gw.code, 1);
    assert.match(gw.stderr, /no gateway constructor/);
  });
});

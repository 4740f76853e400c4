/**
 * `florctl access` and the policy tests of `florctl check` / `deploy` through the real CLI
 * (a `deno run ctl/main.ts` process per command) on a temporary cluster directory.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { florctl, florctlOk, serviceAddArgs } from "../../e2e/harness.ts";

async function withCluster(fn: (dir: string) => Promise<void>) {
  const root = await Deno.makeTempDir({ prefix: "florete-access-" });
  const dir = join(root, "cluster");
  const ok = (...args: string[]) => florctlOk([...args, "--dir", dir]);
  try {
    await ok("init", "acme");
    await ok("node", "add", "n1", "--endpoint", "127.0.0.1:7101");
    await ok("user", "add", "alice", "--group", "devs");
    await ok("user", "add", "bob", "--group", "devs");
    await ok("user", "add", "carol");
    await ok(...serviceAddArgs("web", "n1", "127.0.0.1:8080", "group:devs,user:carol"));
    await ok(...serviceAddArgs("db", "n1", "127.0.0.1:5432", "user:bob"));
    await ok("bundle", "user", "bob", "--out", join(root, "BB"));
    await ok("revoke", "user:bob", "--reason", "laptop lost");
    await fn(dir);
  } finally {
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

Deno.test("florctl access: a service lists each rule, revoked principals marked", async () => {
  await withCluster(async (dir) => {
    const out = await florctlOk(["access", "web", "--dir", dir]);
    const today = new Date().toISOString().slice(0, 10);
    assert.equal(
      out,
      "service web (web.flor:8080 on node n1)\n" +
        `  group:devs → user:alice, user:bob [revoked ${today}: laptop lost]\n` +
        "  user:carol → user:carol\n" +
        "3 principals may connect\n",
    );
    const json = JSON.parse(await florctlOk(["access", "web", "--json", "--dir", dir]));
    assert.deepEqual(json.rules[0], {
      entry: "group:devs",
      principals: ["user:alice", "user:bob"],
    });
    const bob = json.principals.find((p: { principal: string }) => p.principal === "user:bob");
    assert.equal(bob.revoked[0].reason, "laptop lost");
  });
});

Deno.test("florctl access: a principal lists what it reaches; unknown names are refused", async () => {
  await withCluster(async (dir) => {
    const json = JSON.parse(await florctlOk(["access", "user:bob", "--json", "--dir", dir]));
    assert.deepEqual(
      json.services.map((s: { service: string; via: string[] }) => [s.service, s.via]),
      [
        ["db", ["user:bob"]],
        ["web", ["group:devs"]],
      ],
    );
    assert.equal(json.revoked.length, 1);
    const text = await florctlOk(["access", "user:alice", "--dir", dir]);
    assert.match(
      text,
      /^user:alice \(groups: devs\)\n {2}web +web\.flor:8080 on n1 +via group:devs\n/,
    );

    const typo = await florctl(["access", "user:alcie", "--dir", dir]);
    assert.equal(typo.code, 1);
    assert.match(typo.stderr, /user:alcie is not defined.*did you mean 'user:alice'/);
    const svc = await florctl(["access", "wbe", "--dir", dir]);
    assert.equal(svc.code, 1);
    assert.match(svc.stderr, /service 'wbe' is not defined.*did you mean 'web'/);
    const group = await florctl(["access", "group:devs", "--dir", dir]);
    assert.equal(group.code, 1);
    assert.match(group.stderr, /is a group, not a principal/);
  });
});

Deno.test("florctl check and deploy: a broken policy test fails with FILE:LINE:COL", async () => {
  await withCluster(async (dir) => {
    const file = join(dir, "cluster.yaml");
    const good = await Deno.readTextFile(file);
    const tests = "tests:\n  - principal: user:carol\n    reach: [web]\n    deny: [db]\n";
    await Deno.writeTextFile(file, good + tests);
    assert.equal((await florctl(["check", "--dir", dir])).code, 0);

    // A change to the allow list takes carol out of web.
    await Deno.writeTextFile(file, good.replace("- user:carol", "- user:alice") + tests);
    const line = (good + tests).split("\n").indexOf("    reach: [web]") + 1;
    const check = await florctl(["check", "--dir", dir]);
    assert.equal(check.code, 1);
    assert.match(
      check.stderr,
      new RegExp(
        `cluster\\.yaml:${line}:13: tests\\[0\\]\\.reach\\[0\\]: test failed: user:carol cannot reach 'web'`,
      ),
    );
    const deploy = await florctl(["deploy", "--dir", dir]);
    assert.equal(deploy.code, 1);
    assert.match(deploy.stderr, /deploy refused, nothing was pushed[\s\S]*test failed: user:carol/);
  });
});

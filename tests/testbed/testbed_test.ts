/**
 * The testbed in CI: a 3-minute run of a small pilot (2 nodes on two sites, 3 users, 6
 * services of every kind, the LAN gateway, the default emulated WAN) with the faults that fit in it, which must end in a pass; and
 * Ctrl-C in the middle of setting up, which must leave nothing behind.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { canCreateNamespaces } from "../e2e/netns.ts";
import { REPO } from "../e2e/harness.ts";
import { exists } from "../../lib/file_exists.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };
const ok = Deno.build.os === "linux" && Deno.build.arch === "x86_64" &&
  await canCreateNamespaces();
/** deploy-service waits up to a minute for users' map refresh: it needs a longer run. */
const CI_FAULTS = "kill-9,partition,loss-burst,broken-deploy,revoke-user";

function testbed(args: string[]) {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "--config",
      join(REPO, "deno.json"),
      join(REPO, "tests/testbed/main.ts"),
      ...args,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function namespacesOf(pid: number): Promise<string[]> {
  const out = await new Deno.Command("ip", { args: ["netns", "list"] }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.includes(`p${pid}-`));
}

Deno.test(
  { name: "testbed: a 3-minute pilot with faults ends in a pass", ...e2e, ignore: !ok },
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "flor-testbed-ci-" });
    try {
      const report = join(dir, "report.json");
      const child = testbed([
        "--nodes",
        "2",
        "--users",
        "3",
        "--services",
        "6",
        "--minutes",
        "3",
        "--faults",
        CI_FAULTS,
        "--report",
        report,
      ]);
      const out = await child.output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      const r = JSON.parse(await Deno.readTextFile(report));
      assert.equal(r.verdict, "pass", `${r.reasons.join("\n")}\n${text.slice(-4000)}`);
      assert.equal(out.code, 0);
      assert.deepEqual(r.faults.map((f: { kind: string }) => f.kind), CI_FAULTS.split(","));
      assert.ok(r.requests.ok > 100, `only ${r.requests.ok} requests succeeded`);
      assert.equal(r.requests.failed_outside_faults, 0);
      for (const kind of ["download", "short", "ssh", "idle", "lan"]) {
        assert.ok(
          r.requests_log.some((q: { kind: string; ok: boolean }) => q.kind === kind && q.ok),
          `no successful ${kind} request`,
        );
      }
      assert.equal(r.agents.length, 2 + 3 + 1, "two nodes, three users, the gateway");
      assert.match(await Deno.readTextFile(join(dir, "report.md")), /!\[timeline\]\(report\.svg\)/);
      assert.match(await Deno.readTextFile(join(dir, "report.svg")), /^<svg /);
      assert.deepEqual(await namespacesOf(child.pid), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test({
  name: "testbed: Ctrl-C during setup removes namespaces, processes, temp dirs",
  ...e2e,
  ignore: !ok,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "flor-testbed-ci-" });
  const child = testbed([
    "--nodes",
    "2",
    "--users",
    "2",
    "--services",
    "2",
    "--minutes",
    "1",
    "--faults",
    "",
    "--report",
    join(dir, "r.json"),
  ]);
  try {
    let seen = "";
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    while (!/cluster\.yaml: init/.test(seen)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`testbed ended before setup:\n${seen}`);
      seen += value;
    }
    const ns = await namespacesOf(child.pid);
    assert.ok(ns.length > 0, "setup had created namespaces");
    const tmp = /working in (\S+)/.exec(seen)![1];
    child.kill("SIGINT");
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    const status = await child.status;
    assert.equal(status.code, 1);
    assert.deepEqual(await namespacesOf(child.pid), []);
    // This run's processes all name its working directory; other runs' (a developer's
    // testbed beside CI) are not this test's business.
    const left = await new Deno.Command("pgrep", { args: ["-f", tmp] }).output();
    assert.equal(new TextDecoder().decode(left.stdout).trim(), "", "processes left behind");
    if (tmp) {
      assert.ok(!(await exists(`/tmp/${tmp}`)), `${tmp} left`);
    }
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.stderr.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("testbed: a run too short for its faults, or an unknown fault, is refused up front", async () => {
  for (
    const [args, said] of [
      [["--minutes", "2"], /9 faults need \d+ s .* the run has 120 s: pass --minutes \d+ or more/],
      [["--faults", "kill-9,nope"], /unknown fault 'nope'; known: kill-9, partition/],
      [["--wan", "fast"], /link "fast" is neither/],
      [["--nodes", "1"], /--nodes 1: expected a whole number 2-8/],
    ] as const
  ) {
    const out = await testbed([...args]).output();
    assert.equal(out.code, 2, String(args));
    assert.match(new TextDecoder().decode(out.stderr), said);
  }
});

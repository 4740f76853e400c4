/**
 * Release artifacts: `deno task dist` builds an archive that runs with nothing else
 * installed, a node runs from it (on the bundled runtime), `florctl enroll node` installs it
 * over real SSH, and an upgrade that does not come up is rolled back.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { releaseArchiveName, releaseDirName } from "../../lib/platform.ts";
import { VERSION } from "../../lib/version.ts";
import { agentFlags, buildFixture, enrollAlice } from "./fixture.ts";
import {
  type AgentProcess,
  buildDist,
  curlVia,
  florctl,
  florctlOk,
  freeTcpPort,
  freeUdpPort,
  REPO,
  runToEnd,
  startAgentProcess,
  startFlor,
} from "./harness.ts";
import { startSshd } from "./sshd.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };
const TARGET = "linux-x64";
const onLinuxX64 = Deno.build.os === "linux" && Deno.build.arch === "x86_64";

/** With `env`, the child gets that environment and nothing else (no PATH to a Deno). */
function exec(cmd: string, args: string[], env?: Record<string, string>) {
  return runToEnd(cmd, args, { env, clearEnv: env !== undefined });
}

async function gitCommit() {
  return (await exec("git", ["-C", REPO, "rev-parse", "--short=12", "HEAD"])).stdout.trim();
}

Deno.test({
  name: "release: deno task dist builds an archive that runs alone",
  ...e2e,
  ignore: !onLinuxX64,
}, async (t) => {
  const built = await buildDist(TARGET);
  assert.equal(built.code, 0, built.stderr);
  const archive = join(REPO, "dist", releaseArchiveName(VERSION, TARGET));
  const sums = await Deno.readTextFile(join(REPO, "dist", "SHA256SUMS"));
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(archive));
  const hex = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  assert.ok(sums.includes(`${hex}  ${releaseArchiveName(VERSION, TARGET)}`), sums);

  const root = await Deno.makeTempDir({ prefix: "florete-release-" });
  const fx = await buildFixture();
  const agents: AgentProcess[] = [];
  try {
    assert.equal((await exec("tar", ["-xzf", archive, "-C", root])).code, 0);
    const dir = join(root, releaseDirName(VERSION, TARGET));
    const commit = await gitCommit();

    await t.step("--version works with no Deno on PATH and an empty environment", async () => {
      for (const exe of ["flor", "florctl", "flor-gw"]) {
        const r = await exec(join(dir, exe), ["--version"], { PATH: "/nonexistent" });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout.trim(), `${exe} ${VERSION} (commit ${commit})`);
      }
    });

    await t.step(
      "a node agent from the archive carries a tunnel on the bundled runtime",
      async () => {
        const node = await startAgentProcess({
          executable: join(dir, "flor"),
          config: join(fx.bundles.n1, "flor.yaml"),
          flags: agentFlags().flags,
        });
        agents.push(node);
        const exe = await Deno.realPath(`/proc/${node.child.pid}/exe`);
        assert.equal(exe, await Deno.realPath(join(dir, "runtime", "deno")));
        const user = agentFlags();
        agents.push(await startFlor(join(fx.bundles.alice, "flor.yaml"), user.flags));
        const r = await curlVia(user.socks, `http://web.flor:${fx.ports.web}/`);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, "hello from web\n");
      },
    );

    await t.step(
      "flor join from the archive: its unit runs the launcher; leave stops it",
      async () => {
        const socks = freeTcpPort();
        const file = join(root, "alice.flor");
        await enrollAlice(fx.dir, file, socks);
        const home = join(root, "home");
        await Deno.mkdir(home);
        const env = { HOME: home, PATH: "/usr/bin:/bin" };
        const joined = await exec(join(dir, "flor"), ["join", file], env);
        assert.equal(joined.code, 0, joined.stderr);
        // The launcher let join run systemctl (no user manager here), and nothing else.
        assert.match(joined.stdout, /`systemctl --user daemon-reload` failed \(Failed to connect/);
        const config = join(home, ".config", "florete", "flor.yaml");
        const unit = await Deno.readTextFile(
          join(home, ".config", "systemd", "user", "flor.service"),
        );
        assert.match(
          unit,
          new RegExp(`^ExecStart=${join(dir, "flor")} run --config ${config}$`, "m"),
        );

        const agent = await startAgentProcess({ executable: join(dir, "flor"), config, env });
        agents.push(agent);
        const r = await curlVia(socks, `http://web.flor:${fx.ports.web}/`);
        assert.equal(r.stdout, "hello from web\n", r.stderr);
        const left = await exec(join(dir, "flor"), ["leave", "--yes"], env);
        assert.equal(left.code, 0, left.stderr);
        assert.match(left.stdout, /stopped the agent running from this bundle/);
        await agent.child.status;
        assert.ok(agent.events.some((e) => e.message === "agent.stopped"), "not a clean stop");
      },
    );
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await fx.cleanup();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});

Deno.test({
  name: "release: enroll installs the archive over SSH and rolls back a broken upgrade",
  ...e2e,
  ignore: !onLinuxX64,
}, async (t) => {
  const sshd = await startSshd();
  const root = await Deno.makeTempDir({ prefix: "florete-rel-enroll-" });
  const dir = join(root, "cluster");
  const env = { FLORCTL_SSH_CONFIG: sshd.config };
  const prefix = join(root, "host-n1");
  const pidFile = join(prefix, "var/lib/florete/flor.pid");
  const c = (...args: string[]) => florctlOk([...args, "--dir", dir], { env });
  const enroll = [
    "enroll",
    "node",
    "n1",
    "--prefix",
    prefix,
    "--init",
    "none",
    "--metrics",
    `127.0.0.1:${freeTcpPort()}`,
  ];
  try {
    await c("init", "acme");
    await c("node", "add", "n1", "--endpoint", `127.0.0.1:${freeUdpPort()}`, "--ssh", sshd.host);

    await t.step("enroll without --binary installs the release archive for the host", async () => {
      const out = await c(...enroll);
      assert.match(out, new RegExp(`installing .*${releaseArchiveName(VERSION, TARGET)}`));
      assert.match(out, /enrolled: answers over the mesh as node:n1/);
      const pid = Number((await Deno.readTextFile(pidFile)).trim());
      const exe = await Deno.realPath(`/proc/${pid}/exe`);
      assert.equal(exe, join(prefix, "opt/florete/bin/runtime/deno"));
    });

    await t.step("a broken upgrade is rolled back and the node keeps serving", async () => {
      const broken = join(root, "flor-broken");
      await Deno.writeTextFile(broken, "#!/bin/sh\necho 'this release is broken' >&2\nexit 1\n", {
        mode: 0o755,
      });
      const r = await florctl([...enroll, "--binary", broken, "--dir", dir], { env });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /upgrade failed; rolled back to the previous release/);
      assert.match(r.stderr, /was rolled back/);
      const pid = Number((await Deno.readTextFile(pidFile)).trim());
      assert.equal(
        await Deno.realPath(`/proc/${pid}/exe`),
        join(prefix, "opt/florete/bin/runtime/deno"),
      );
      const status = await florctl(["status", "--json", "--dir", dir], { env });
      assert.equal(status.code, 0, status.stdout + status.stderr);
      assert.ok(await Deno.stat(join(prefix, "opt/florete/bin.failed/flor")));
    });
  } finally {
    try {
      Deno.kill(Number((await Deno.readTextFile(pidFile)).trim()), "SIGKILL");
    } catch { /* not running */ }
    await sshd.stop();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});

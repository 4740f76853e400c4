/**
 * `flor join` installs the user's autostart and `flor leave` takes everything away, with a
 * real flor, a real node agent and curl. No systemd runs on this machine, so the unit's
 * ExecStart is run here as systemd would run it, and the agent must come up and carry
 * traffic; `systemctl --user` itself is real and fails (no user manager), which is the
 * fallback path.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { agentFlags, enrollAlice, withFixture } from "./fixture.ts";
import { curlVia, flor, florctlOk, freeTcpPort, startAgentProcess } from "./harness.ts";
import { exists } from "../../lib/file_exists.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };
/** How long `flor leave` may take to stop a running agent (it waits up to 5 s itself). */
const AGENT_EXIT_MS = 8_000;

/** The words of a systemd command line: double quotes, backslash escapes, $$ and %%. */
function systemdWords(line: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (const m of line.matchAll(re)) {
    const w = m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2];
    words.push(w.replaceAll("$$", "$").replaceAll("%%", "%"));
  }
  return words;
}

/** A cluster with user bob only, and his one-file bundle (enough for join and leave). */
async function bobBundle(root: string): Promise<string> {
  const dir = join(root, "cluster");
  const file = join(root, "bob.flor");
  await florctlOk(["init", "acme", "--dir", dir]);
  await florctlOk(["user", "add", "bob", "--dir", dir]);
  await florctlOk(["enroll", "user", "bob", "--out", file, "--dir", dir]);
  return file;
}

async function withTempDir(fn: (root: string) => Promise<void>) {
  const root = await Deno.makeTempDir({ prefix: "florete-autostart-" });
  try {
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** The users in these tests have their own HOME; they share this Deno's module cache so
 * flor from source does not fetch its npm packages again into each HOME. */
const DENO_DIR = JSON.parse(
  new TextDecoder().decode(
    (await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output()).stdout,
  ),
).denoDir as string;

function userEnv(home: string, path = Deno.env.get("PATH") ?? "/usr/bin:/bin") {
  return { HOME: home, PATH: path, DENO_DIR };
}

Deno.test(
  "e2e: flor join writes a user unit whose ExecStart brings the agent up; leave removes all",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      await start(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
      const socks = freeTcpPort();
      const file = join(fx.root, "alice.flor");
      await enrollAlice(fx.dir, file, socks);
      const home = join(fx.root, "home alice"); // a space, as in many home directories
      await Deno.mkdir(home);
      const env = userEnv(home);

      const joined = await flor(["join", file], { env });
      assert.equal(joined.code, 0, joined.stderr);
      assert.match(
        joined.stdout,
        /autostart: `systemctl --user daemon-reload` failed \(Failed to connect to bus/,
      );
      assert.match(joined.stdout, /no systemd user manager runs for this session/);
      assert.match(joined.stdout, /start the agent now with: flor run/);

      const config = join(home, ".config", "florete", "flor.yaml");
      const unitFile = join(home, ".config", "systemd", "user", "flor.service");
      const unit = await Deno.readTextFile(unitFile);
      assert.match(unit, /^WantedBy=default\.target$/m);
      assert.match(unit, /^Restart=on-failure$/m);
      const execStart = systemdWords(unit.match(/^ExecStart=(.*)$/m)![1]);
      assert.deepEqual(execStart.slice(-3), ["run", "--config", config]);

      // Exactly the unit's words, in a working directory of its own as systemd gives it.
      const agent = await startAgentProcess({
        wrap: execStart.slice(0, -4),
        executable: execStart.at(-4),
        config,
        env,
        cwd: home,
      });
      try {
        const got = await curlVia(socks, `http://web.flor:${fx.ports.web}/`);
        assert.equal(got.stdout, "hello from web\n", got.stderr);

        // Refused without --yes when there is no terminal to ask on: nothing is touched.
        const refused = await flor(["leave"], { env });
        assert.equal(refused.code, 1);
        assert.match(
          refused.stderr,
          /would remove the bundle of user:alice@acme in .* confirm with --yes/,
        );
        assert.ok(await exists(config) && await exists(unitFile));

        const left = await flor(["leave", "--yes"], { env });
        assert.equal(left.code, 0, left.stderr);
        assert.match(left.stdout, /stopped and removed the autostart/);
        assert.match(
          left.stdout,
          new RegExp(`stopped the agent running from this bundle \\(pid ${agent.child.pid}\\)`),
        );
        const exited = await Promise.race([
          agent.child.status.then(() => true),
          new Promise((r) => setTimeout(() => r(false), AGENT_EXIT_MS)),
        ]);
        assert.ok(exited, "the agent still runs after flor leave");
        assert.ok(agent.events.some((e) => e.message === "agent.stopped"), "not a clean stop");
        assert.equal(await exists(join(home, ".config", "florete")), false);
        assert.equal(await exists(unitFile), false);

        const again = await flor(["leave", "--yes"], { env });
        assert.equal(again.code, 0);
        assert.match(again.stdout, /nothing to remove/);
      } finally {
        await agent.stop();
      }
    }),
);

Deno.test(
  "e2e: flor join --no-service installs the bundle only",
  e2e,
  () =>
    withTempDir(async (root) => {
      const file = await bobBundle(root);
      const home = join(root, "home");
      await Deno.mkdir(home);
      const env = userEnv(home);
      const joined = await flor(["join", file, "--no-service"], { env });
      assert.equal(joined.code, 0, joined.stderr);
      assert.match(joined.stdout, /start the agent with `flor run`/);
      assert.ok(await exists(join(home, ".config", "florete", "flor.yaml")));
      assert.equal(await exists(join(home, ".config", "systemd")), false);
    }),
);

// systemd cannot run here, so this one puts a stand-in `systemctl` first on PATH that
// records its arguments: it checks which commands join and leave give a user manager.
Deno.test(
  "e2e: with a user manager, join enables --now and leave disables --now",
  e2e,
  () =>
    withTempDir(async (root) => {
      const file = await bobBundle(root);
      const home = join(root, "home");
      const bin = join(root, "bin");
      await Deno.mkdir(home);
      await Deno.mkdir(bin);
      const calls = join(root, "systemctl.calls");
      await Deno.writeTextFile(
        join(bin, "systemctl"),
        `#!/bin/sh\necho "$*" >> '${calls}'\n`,
        { mode: 0o755 },
      );
      const env = userEnv(home, `${bin}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`);
      const joined = await flor(["join", file], { env });
      assert.equal(joined.code, 0, joined.stderr);
      assert.match(
        joined.stdout,
        /systemd user unit .*flor\.service is enabled and the agent started/,
      );
      assert.match(joined.stdout, /loginctl enable-linger/);
      assert.deepEqual((await Deno.readTextFile(calls)).trim().split("\n"), [
        "--user daemon-reload",
        "--user enable --now flor.service",
      ]);
      // Joining again restarts the agent on the new bundle.
      const rejoined = await flor(["join", file], { env });
      assert.equal(rejoined.code, 0, rejoined.stderr);
      assert.deepEqual((await Deno.readTextFile(calls)).trim().split("\n").slice(2), [
        "--user disable --now flor.service",
        "--user daemon-reload",
        "--user enable --now flor.service",
      ]);
      const left = await flor(["leave", "--yes"], { env });
      assert.equal(left.code, 0, left.stderr);
      assert.deepEqual((await Deno.readTextFile(calls)).trim().split("\n").slice(5), [
        "--user disable --now flor.service",
        "--user daemon-reload",
      ]);
    }),
);

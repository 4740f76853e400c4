/**
 * `flor forward` and `forwards:` in flor.yaml with real processes: psql against a real
 * PostgreSQL server behind node n1 through a local port, the refusals (the local connection
 * closed, a `forward.refused` event saying why), forwards added to and removed from the running
 * agent, a forward in the foreground without an agent, and forwards kept by a new `flor join`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { agentFlags, startNodeAndAlice, withFixture } from "./fixture.ts";
import {
  echoRoundTrip,
  flor,
  florctlOk,
  freeTcpPort,
  randomBytes,
  readToEnd,
  REPO,
} from "./harness.ts";
import { psql, startPostgres } from "./postgres.ts";
import { loadAgentConfig } from "../../agent/config.ts";

async function addForwards(bundle: string, forwards: Array<[string, string]>) {
  const lines = forwards.map(([l, s]) => `  - listen: ${l}\n    service: ${s}\n`).join("");
  await Deno.writeTextFile(join(bundle, "flor.yaml"), `forwards:\n${lines}`, { append: true });
}

/** Connects, sends a little and reads until the agent closes: the bytes that came back. */
async function poke(port: number): Promise<Uint8Array> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await c.write(new TextEncoder().encode("hello?\n")).catch(() => 0);
    return await readToEnd(c);
  } finally {
    try {
      c.close();
    } catch { /* closed */ }
  }
}

Deno.test("forward: psql reaches PostgreSQL behind n1 through a forward from flor.yaml", async () => {
  const pg = await startPostgres();
  try {
    await withFixture(async (fx, start) => {
      const local = freeTcpPort();
      await addForwards(fx.bundles.alice, [[`127.0.0.1:${local}`, `db.flor:${pg.port}`]]);
      const { alice, user: a } = await startNodeAndAlice(fx, start, { metrics: true });
      await alice.waitFor("forward.open", (e) => e.listen === `127.0.0.1:${local}`);

      const r = await psql(local, "select 'through flor', current_user");
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), "through flor|postgres");
      const open = await alice.waitFor("tunnel.open", (e) => e.service === "db");
      assert.equal(open.principal, "user:alice");
      assert.equal(open.node, "n1");

      const st = await flor([
        "status",
        "--config",
        join(fx.bundles.alice, "flor.yaml"),
        "--metrics",
        `127.0.0.1:${a.metrics}`,
      ]);
      assert.equal(st.code, 0, st.stderr);
      assert.match(
        st.stdout,
        new RegExp(
          `127\\.0\\.0\\.1:${local}\\s+→ db\\.flor:${pg.port} \\(flor\\.yaml\\): 0 open, 1 carried, 0 refused`,
        ),
        st.stdout,
      );
    }, [{ name: "db", node: "n1", port: pg.port, allow: "group:devs" }]);
  } finally {
    await pg.stop();
  }
});

Deno.test("forward: refused connections are closed with a forward.refused event saying why", async () => {
  const deadPort = freeTcpPort();
  await withFixture(async (fx, start) => {
    const ports = {
      ci: freeTcpPort(),
      nope: freeTcpPort(),
      gone: freeTcpPort(),
      n2: freeTcpPort(),
    };
    await addForwards(fx.bundles.alice, [
      [String(ports.ci), "ci"], // exists, alice is not allowed
      [String(ports.nope), "nope.flor"], // no such service
      [String(ports.gone), "gone"], // allowed, nothing listens at its target
      [String(ports.n2), "later"], // allowed, its node n2 is not running
    ]);
    await start(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
    const alice = await start(join(fx.bundles.alice, "flor.yaml"), agentFlags().flags);
    const cases: Array<[number, string, string]> = [
      [ports.ci, "not_allowed", "not in the allow list of service 'ci'"],
      [ports.nope, "unknown_service", "'nope' is not defined"],
      [ports.gone, "node_target_refused", "n1"],
      [ports.n2, "unreachable", "n2"],
    ];
    for (const [port, reason, detail] of cases) {
      const back = await poke(port);
      assert.equal(back.length, 0, `${reason}: the local connection must be closed unanswered`);
      const ev = await alice.waitFor("forward.refused", (e) => e.listen === `127.0.0.1:${port}`);
      assert.equal(ev.reason, reason, JSON.stringify(ev));
      assert.ok(String(ev.detail).includes(detail), JSON.stringify(ev));
      assert.equal(ev.principal, "user:alice");
    }
    assert.ok(!alice.events.some((e) => e.message === "tunnel.open"));
  }, [
    { name: "gone", node: "n1", port: deadPort, allow: "group:devs" },
    { name: "later", node: "n2", port: freeTcpPort(), allow: "group:devs" },
  ]);
});

Deno.test("forward: flor forward adds to and removes from the running agent", async () => {
  await withFixture(async (fx, start) => {
    await start(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
    const a = agentFlags({ metrics: true });
    const config = join(fx.bundles.alice, "flor.yaml");
    const alice = await start(config, a.flags);
    const via = ["--config", config, "--metrics", `127.0.0.1:${a.metrics}`];

    const added = await flor(["forward", "0", "echo.flor", ...via]);
    assert.equal(added.code, 0, added.stderr);
    const m = /forwarding 127\.0\.0\.1:(\d+) → echo\.flor as user:alice/.exec(added.stdout);
    assert.ok(m, added.stdout);
    assert.ok(added.stdout.includes(`forwards:\n  - listen: 127.0.0.1:${m[1]}\n`), added.stdout);
    const local = Number(m[1]);
    const c = await Deno.connect({ hostname: "127.0.0.1", port: local });
    const data = randomBytes(256 * 1024);
    assert.deepEqual(await echoRoundTrip(c, data), data);
    c.close();

    const denied = await flor(["forward", String(freeTcpPort()), "ci", ...via]);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /user:alice is not in the allow list of service 'ci'/);
    const outside = await flor(["forward", "0.0.0.0:1", "echo", ...via]);
    assert.equal(outside.code, 1);
    assert.match(outside.stderr, /not a loopback address/);
    const twice = await flor(["forward", String(local), "web", ...via]);
    assert.equal(twice.code, 1);
    assert.match(twice.stderr, /already forwards to echo\.flor/);

    // flor.yaml's forwards follow a reload; the runtime forward stays.
    const original = await Deno.readTextFile(config);
    const fromFile = freeTcpPort();
    await addForwards(fx.bundles.alice, [[String(fromFile), "echo"]]);
    const reload = ["reload", "--config", config, "--metrics", `127.0.0.1:${a.metrics}`];
    assert.equal((await flor(reload)).code, 0);
    await alice.waitFor("forward.open", (e) => e.origin === "config");
    for (const port of [fromFile, local]) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      assert.deepEqual(await echoRoundTrip(conn, data), data);
      conn.close();
    }
    await Deno.writeTextFile(config, original);
    assert.equal((await flor(reload)).code, 0);
    await alice.waitFor("forward.closed", (e) => e.listen === `127.0.0.1:${fromFile}`);
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: fromFile }));

    const removed = await flor(["forward", "--remove", String(local), ...via]);
    assert.equal(removed.code, 0, removed.stderr);
    await alice.waitFor("forward.closed", (e) => e.listen === `127.0.0.1:${local}`);
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: local }));
    const again = await flor(["forward", "--remove", String(local), ...via]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /no forward on 127\.0\.0\.1:\d+/);

    const stopped = await flor([
      "forward",
      "0",
      "echo",
      "--config",
      config,
      "--metrics",
      `127.0.0.1:${freeTcpPort()}`,
    ]);
    assert.equal(stopped.code, 1);
    assert.match(stopped.stderr, /--foreground/);
  });
});

Deno.test("forward: --foreground carries connections without a running agent until SIGTERM", async () => {
  await withFixture(async (fx, start) => {
    await start(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
    const local = freeTcpPort();
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "--config",
        join(REPO, "deno.json"),
        join(REPO, "agent/main.ts"),
        "forward",
        "--foreground",
        String(local),
        "echo",
        "--config",
        join(fx.bundles.alice, "flor.yaml"),
      ],
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes('"forward.open"')) {
      const { value, done } = await stdout.read();
      if (done) break;
      text += value;
    }
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: local });
      const data = randomBytes(64 * 1024);
      assert.deepEqual(await echoRoundTrip(c, data), data);
      c.close();
    } finally {
      child.kill("SIGTERM");
      const status = await child.status;
      await stdout.cancel();
      const err = await new Response(child.stderr).text();
      assert.equal(status.code, 0, err);
      assert.match(
        err,
        new RegExp(`forwarding 127\\.0\\.0\\.1:${local} → echo\\.flor as user:alice`),
      );
    }
  });
});

Deno.test("forward: the control endpoint refuses a wrong token, a bad body and agents without an identity to lend", async () => {
  await withFixture(async (fx, start) => {
    const n = agentFlags({ metrics: true });
    await start(join(fx.bundles.n1, "flor.yaml"), n.flags);
    const a = agentFlags({ metrics: true });
    await start(join(fx.bundles.alice, "flor.yaml"), a.flags);
    const token = async (bundle: string) =>
      (await Deno.readTextFile(join(bundle, "state", "control.token"))).trim();
    const post = async (port: number, body: string, tok: string) => {
      const res = await fetch(`http://127.0.0.1:${port}/control/forward`, {
        method: "POST",
        headers: { authorization: `Bearer ${tok}` },
        body,
      });
      return { status: res.status, text: await res.text() };
    };
    const ok = JSON.stringify({ listen: "0", service: "echo" });
    assert.equal((await post(a.metrics!, ok, "guess")).status, 403);
    const aliceToken = await token(fx.bundles.alice);
    const big = await post(
      a.metrics!,
      JSON.stringify({ listen: "0", service: "x".repeat(5000) }),
      aliceToken,
    );
    assert.equal(big.status, 400);
    assert.match(big.text, /body over 4096 bytes/);
    assert.equal((await post(a.metrics!, "{not json", aliceToken)).status, 400);
    const unknown = await post(
      a.metrics!,
      JSON.stringify({ listen: "0", service: "nope" }),
      aliceToken,
    );
    assert.equal(unknown.status, 404);
    assert.match(unknown.text, /'nope' is not defined/);
    const node = await post(n.metrics!, ok, await token(fx.bundles.n1));
    assert.equal(node.status, 409);
    assert.match(node.text, /does not forward/);
    const fg = await flor([
      "forward",
      "--foreground",
      "0",
      "echo",
      "--config",
      join(fx.bundles.n1, "flor.yaml"),
    ]);
    assert.equal(fg.code, 1);
    assert.match(fg.stderr, /no socks\.default_identity to lend/);
    const usage = await flor(["forward", "15432", "--config", join(fx.bundles.alice, "flor.yaml")]);
    assert.equal(usage.code, 1);
    assert.match(usage.stderr, /usage: flor forward \[BIND:\]PORT SERVICE/);
  });
});

Deno.test("forward: flor join of a new bundle for the same user keeps the user's forwards", async () => {
  await withFixture(async (fx) => {
    const home = join(fx.root, "alice-home");
    const env = { XDG_CONFIG_HOME: join(home, ".config"), HOME: home };
    const file = join(fx.root, "alice.flor");
    await florctlOk(["enroll", "user", "alice", "--out", file, "--dir", fx.dir]);
    assert.equal((await flor(["join", file], { env })).code, 0);
    const joined = join(home, ".config", "florete");
    await addForwards(joined, [["15432", "db.flor"]]);
    await florctlOk(["enroll", "user", "alice", "--out", file, "--dir", fx.dir]);
    const again = await flor(["join", file], { env });
    assert.equal(again.code, 0, again.stderr);
    const loaded = await loadAgentConfig(join(joined, "flor.yaml"));
    assert.deepEqual(loaded.config.forwards, [{ listen: "15432", service: "db.flor" }]);
  });
});

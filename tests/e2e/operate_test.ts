/**
 * Operating a cluster over real SSH (an OpenSSH server started by the test): enroll two
 * nodes with --init none and separate prefixes, join a user, deploy changes while traffic
 * flows, revoke, and the failure paths (unreachable node, broken cluster.yaml, host key).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type AgentProcess,
  echoRoundTrip,
  flor,
  florctl,
  florctlOk,
  freeTcpPort,
  freeUdpPort,
  randomBytes,
  readToEnd,
  serviceAddArgs,
  sha256Hex,
  socksConnect,
  startEcho,
  startFlor,
  writeLauncher,
} from "./harness.ts";
import { startSshd } from "./sshd.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };

async function killPidFile(file: string) {
  try {
    const pid = Number((await Deno.readTextFile(file)).trim());
    if (pid > 0) Deno.kill(pid, "SIGKILL");
  } catch {
    // not running
  }
}

Deno.test("e2e: enroll, join, deploy, revoke over real SSH", e2e, async (t) => {
  const sshd = await startSshd();
  const root = await Deno.makeTempDir({ prefix: "florete-operate-" });
  const dir = join(root, "cluster");
  const env = { FLORCTL_SSH_CONFIG: sshd.config };
  const c = (...args: string[]) => florctlOk([...args, "--dir", dir], { env });
  const echo1 = startEcho();
  const echo2 = startEcho();
  const echo3 = startEcho();
  const ports = { n1: freeUdpPort(), n2: freeUdpPort() };
  const prefix = { n1: join(root, "host-n1"), n2: join(root, "host-n2") };
  const launcher = await writeLauncher(join(root, "flor-launcher"));
  const agents: AgentProcess[] = [];
  const metrics = { n1: `127.0.0.1:${freeTcpPort()}`, n2: `127.0.0.1:${freeTcpPort()}` };
  const enrollArgs = (n: "n1" | "n2") => [
    "enroll",
    "node",
    n,
    "--binary",
    launcher,
    "--prefix",
    prefix[n],
    "--init",
    "none",
    "--metrics",
    metrics[n],
  ];
  const userEnv = {
    XDG_CONFIG_HOME: join(root, "alice-home", ".config"),
    HOME: join(root, "alice-home"),
  };
  try {
    await c("init", "acme");
    await c("node", "add", "n1", "--endpoint", `127.0.0.1:${ports.n1}`, "--ssh", sshd.host);
    await c("node", "add", "n2", "--endpoint", `127.0.0.1:${ports.n2}`, "--ssh", sshd.host);
    await c("user", "add", "alice", "--group", "devs");
    await c(...serviceAddArgs("echo", "n1", `127.0.0.1:${echo1.port}`, "group:devs"));
    await c(...serviceAddArgs("spare", "n2", `127.0.0.1:${echo2.port}`, "group:devs"));

    await t.step("enroll two nodes over SSH; each answers with its config hash", async () => {
      for (const n of ["n1", "n2"] as const) {
        const out = await c(...enrollArgs(n));
        assert.match(out, new RegExp(`${n}: enrolled: answers over the mesh as node:${n}`));
      }
      const key = await Deno.stat(join(prefix.n1, "etc/florete/keys/node-n1.key"));
      assert.equal(key.mode! & 0o777, 0o600);
    });

    await t.step("enrolling again changes nothing", async () => {
      // n2's enrollment changed the cluster map (its install entry): n1 takes it first.
      assert.match(await c(...enrollArgs("n1")), /writing .*cluster\.yaml/);
      const pidFile = join(prefix.n1, "var/lib/florete/flor.pid");
      const pid = await Deno.readTextFile(pidFile);
      const out = await c(
        "enroll",
        "node",
        "n1",
        "--binary",
        launcher,
        "--prefix",
        prefix.n1,
        "--init",
        "none",
      );
      assert.match(out, /unchanged; flor is running/);
      assert.doesNotMatch(out, /writing|installing/);
      assert.equal(await Deno.readTextFile(pidFile), pid);
    });

    const aliceSocks = freeTcpPort();
    await t.step("flor join then flor run works for a user bundle", async () => {
      const file = join(root, "alice.flor");
      await c("enroll", "user", "alice", "--out", file);
      assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
      const j = await flor(["join", file], { env: userEnv });
      assert.equal(j.code, 0, j.stderr);
      const alice = await startFlor(undefined, [
        "--socks",
        `127.0.0.1:${aliceSocks}`,
        "--metrics",
        "off",
      ], userEnv);
      agents.push(alice);
      const s = await socksConnect(aliceSocks, "echo.flor", echo1.port);
      assert.equal(s.reply, 0);
      const back = await echoRoundTrip(s.conn, new TextEncoder().encode("joined"));
      s.conn.close();
      assert.equal(new TextDecoder().decode(back), "joined");
    });

    await t.step(
      "a deployed service becomes reachable while another transfer goes on",
      async () => {
        // A transfer on alice's tunnel, paced to span the deploy.
        const s = await socksConnect(aliceSocks, "echo.flor", echo1.port);
        assert.equal(s.reply, 0);
        const data = randomBytes(4 * 1024 * 1024);
        const transfer = (async () => {
          const reading = readToEnd(s.conn);
          for (let o = 0; o < data.length; o += 64 * 1024) {
            await s.conn.write(data.subarray(o, o + 64 * 1024));
            await new Promise((r) => setTimeout(r, 40));
          }
          await s.conn.closeWrite();
          return await reading;
        })();
        transfer.catch(() => {}); // awaited below; never an unhandled rejection meanwhile

        // The new service: echo3 on n2, for workloads of service:echo (on n1).
        await c(...serviceAddArgs("api", "n2", `127.0.0.1:${echo3.port}`, "service:echo"));
        const installed = join(prefix.n2, "etc/florete/cluster.yaml");
        const before = await Deno.readTextFile(installed);
        const dry = await c("deploy", "--dry-run");
        assert.match(dry, /n2: would update .*cluster\.yaml/);
        assert.match(dry, /deploy \(dry run\): 2 to update/);
        assert.equal(await Deno.readTextFile(installed), before, "a dry run changed a node");
        const out = await c("deploy");
        assert.match(out, /deploy: 2 updated, 0 unchanged, 0 skipped, 0 failed/);
        assert.match(out, /n1: reloaded/);

        const password = (await Deno.readTextFile(
          join(prefix.n1, "etc/florete/secrets/service-echo.password"),
        )).trim();
        const api = await socksConnect(ports.n1, "api.flor", echo3.port, {
          user: "echo",
          pass: password,
        });
        assert.equal(api.reply, 0);
        const back = await echoRoundTrip(api.conn, new TextEncoder().encode("new service"));
        api.conn.close();
        assert.equal(new TextDecoder().decode(back), "new service");

        const got = await transfer;
        s.conn.close();
        assert.equal(got.length, data.length, "the transfer across the deploy was cut");
        assert.equal(await sha256Hex(got), await sha256Hex(data));
      },
    );

    await t.step("a tunnel no longer allowed is closed within 1 s of the reload", async () => {
      const s = await socksConnect(aliceSocks, "echo.flor", echo1.port);
      assert.equal(s.reply, 0);
      const file = join(dir, "cluster.yaml");
      const text = await Deno.readTextFile(file);
      await Deno.writeTextFile(
        file,
        text.replace(/(echo:\n(?:.*\n)*?\s+allow:\n\s+- )group:devs/, "$1service:echo"),
      );
      const closed = (async () => {
        const buf = new Uint8Array(16);
        try {
          while ((await s.conn.read(buf)) !== null) { /* drain */ }
        } catch { /* reset */ }
        return Date.now();
      })();
      await c("deploy", "--node", "n1");
      await closed; // the client side saw its tunnel end
      s.conn.close();
      // The node's own clock: the cut is part of taking the new map (it may log first).
      const events = (await Deno.readTextFile(join(prefix.n1, "var/log/florete/flor.log")))
        .split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
      const reloaded = events.findLast((e) => e.message === "config.reloaded");
      const revoked = events.findLast((e) =>
        e.message === "policy.revoked" && e.service === "echo" && e.principal === "user:alice"
      );
      assert.ok(reloaded && revoked, "config.reloaded and policy.revoked events expected");
      const ms = Date.parse(revoked["@timestamp"]) - Date.parse(reloaded["@timestamp"]);
      assert.ok(Math.abs(ms) < 1000, `tunnel cut ${ms} ms from the reload`);
      await Deno.writeTextFile(file, text);
      await c("deploy", "--node", "n1");
    });

    await t.step("rotated certificates reach the nodes with deploy", async () => {
      const certFile = join(prefix.n1, "etc/florete/certs/node-n1.crt");
      const before = await Deno.readTextFile(certFile);
      const out = await c("rotate", "--within", "400d");
      assert.match(out, /renewed node:n1/);
      assert.match(out, /florctl enroll user alice/);
      const d = await c("deploy");
      assert.match(d, /n1: restarted \(its own certificate changed\)/);
      assert.match(d, /deploy: 2 updated/);
      assert.notEqual(await Deno.readTextFile(certFile), before);
      // alice's agent still holds her previous (valid) certificate and keeps working.
      const s = await socksConnect(aliceSocks, "echo.flor", echo1.port);
      s.conn.close();
      assert.equal(s.reply, 0);
    });

    await t.step("a revoked user is cut off after deploy", async () => {
      const before = await socksConnect(aliceSocks, "echo.flor", echo1.port);
      assert.equal(before.reply, 0);
      await c("revoke", "user:alice", "--reason", "laptop lost");
      await c("deploy");
      const buf = new Uint8Array(16);
      const r = await before.conn.read(buf).catch(() => null);
      before.conn.close();
      assert.equal(r, null, "the revoked user's live tunnel survived");
      const after = await socksConnect(aliceSocks, "echo.flor", echo1.port);
      after.conn.close();
      assert.equal(after.reply, 0x02);
    });

    await t.step("a deploy to an unreachable node fails naming it; the others update", async () => {
      const file = join(dir, "cluster.yaml");
      const text = await Deno.readTextFile(file);
      const dead = freeTcpPort();
      await Deno.writeTextFile(
        file,
        text.replace(
          "users:",
          `  n3:\n    endpoint: 127.0.0.1:${freeUdpPort()}\n    ssh: root@127.0.0.1:${dead}\n    install:\n      prefix: ${
            join(root, "host-n3")
          }\n      init: none\nusers:`,
        ),
      );
      const r = await florctl(["deploy", "--dir", dir], { env });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /n3: FAILED: .*cannot connect with ssh/);
      assert.match(r.stdout, /deploy: 2 updated, 0 unchanged, 0 skipped, 1 failed \(n3\)/);
    });

    await t.step("a broken cluster.yaml is refused before anything is pushed", async () => {
      const installed = join(prefix.n1, "etc/florete/cluster.yaml");
      const before = await Deno.readTextFile(installed);
      const file = join(dir, "cluster.yaml");
      await Deno.writeTextFile(
        file,
        (await Deno.readTextFile(file)).replace("node: n1", "node: n9"),
      );
      const r = await florctl(["deploy", "--dir", dir], { env });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /nothing was pushed/);
      assert.match(r.stderr, /cluster\.yaml:\d+:\d+: services\.echo\.node: node 'n9'/);
      assert.equal(await Deno.readTextFile(installed), before);
    });
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    for (const n of ["n1", "n2"] as const) {
      await killPidFile(join(prefix[n], "var/lib/florete/flor.pid"));
    }
    echo1.close();
    echo2.close();
    echo3.close();
    await sshd.stop();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});

Deno.test("e2e: an unknown host key stops enroll, never bypassed", e2e, async () => {
  const sshd = await startSshd({ hostKeyMismatch: true });
  const root = await Deno.makeTempDir({ prefix: "florete-hostkey-" });
  const dir = join(root, "cluster");
  const env = { FLORCTL_SSH_CONFIG: sshd.config };
  try {
    await florctlOk(["init", "acme", "--dir", dir]);
    await florctlOk([
      "node",
      "add",
      "n1",
      "--endpoint",
      "127.0.0.1:7101",
      "--ssh",
      sshd.host,
      "--dir",
      dir,
    ]);
    const r = await florctl([
      "enroll",
      "node",
      "n1",
      "--init",
      "none",
      "--binary",
      "/bin/true",
      "--dir",
      dir,
    ], { env });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /host key verification failed\. florctl never bypasses it/);
  } finally {
    await sshd.stop();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});

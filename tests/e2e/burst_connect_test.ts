/**
 * The pilot's morning: many users' agents start at once and each makes a request straight
 * away, so one node takes a dozen QUIC handshakes and auth messages together on a loaded
 * machine. Every request must get through and the node must not log anyone as refused
 * (the testbed's 12-user run saw `auth.denied reason=malformed` here).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type AgentProcess,
  echoRoundTrip,
  florctlOk,
  freeUdpPort,
  serviceAddArgs,
  socksConnect,
  startEcho,
  startFlor,
} from "./harness.ts";
import { agentFlags, dialUnauthenticated, withFixture } from "./fixture.ts";
import { nodeServerName } from "../../lib/identity.ts";
import { ALPN, CloseCode } from "../../lib/protocol.ts";
import { frame } from "../../lib/binary.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };

/** The pilot's user count (issue 14: 10-20 users). */
const USERS = 12;

Deno.test(
  `e2e: ${USERS} users' first requests at the same moment all get through`,
  e2e,
  async () => {
    const root = await Deno.makeTempDir({ prefix: "florete-burst-" });
    const dir = join(root, "cluster");
    const echo = startEcho();
    const agents: AgentProcess[] = [];
    try {
      const c = (...args: string[]) => florctlOk([...args, "--dir", dir]);
      await c("init", "acme");
      await c("node", "add", "n1", "--endpoint", `127.0.0.1:${freeUdpPort()}`);
      const names = Array.from({ length: USERS }, (_, i) => `u${i + 1}`);
      for (const u of names) await c("user", "add", u, "--group", "devs");
      await c(...serviceAddArgs("echo", "n1", `127.0.0.1:${echo.port}`, "group:devs"));
      await c("bundle", "node", "n1", "--out", join(root, "b-n1"));
      for (const u of names) await c("bundle", "user", u, "--out", join(root, `b-${u}`));
      const n1 = await startFlor(join(root, "b-n1", "flor.yaml"), agentFlags().flags);
      agents.push(n1);

      // The agents start one after the other (a dozen Deno start-ups at once on a loaded
      // machine can miss the harness's 20 s), then every user's first request goes out in the
      // same moment: a dozen handshakes and auth messages at once, as at 9:00.
      const users = [];
      for (const u of names) {
        const f = agentFlags();
        const a = await startFlor(join(root, `b-${u}`, "flor.yaml"), f.flags);
        agents.push(a);
        users.push({ u, a, socks: f.socks });
      }
      const results = await Promise.all(users.map(async ({ u, a, socks }) => {
        const t0 = performance.now();
        const s = await socksConnect(socks, "echo.flor", echo.port);
        let echoed = false;
        if (s.reply === 0) {
          const data = new TextEncoder().encode(`hello from ${u}`);
          echoed = (await echoRoundTrip(s.conn, data)).length === data.length;
        }
        s.conn.close();
        const refused = a.events.find((e) => e.message === "socks.refused");
        return { u, reply: s.reply, echoed, ms: Math.round(performance.now() - t0), refused };
      }));
      const failed = results.filter((r) => r.reply !== 0 || !r.echoed);
      const denied = n1.events.filter((e) => e.message === "auth.denied");
      console.log(
        `first request ms: ${results.map((r) => r.ms).sort((a, b) => a - b).join(" ")}`,
      );
      assert.deepEqual(
        failed,
        [],
        `failed: ${JSON.stringify(failed)}; node: ${JSON.stringify(denied)}`,
      );
      assert.deepEqual(denied, [], "the node refused a user whose request succeeded");
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
      echo.close();
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
);

Deno.test(
  "e2e: a client that hangs up before or during auth is logged as abandoned, not refused",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const caPem = await Deno.readTextFile(join(fx.dir, "pki", "ca.crt"));
      const n1 = await start(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
      const dial = () => dialUnauthenticated(fx.ports.n1, caPem);
      // What a client whose connect deadline passed does with a handshake that completes
      // late: it closes the connection before any stream.
      const early = await dial();
      early.close({ closeCode: CloseCode.NORMAL, reason: "connect timed out" });
      const abandoned = await n1.waitFor("auth.abandoned");
      assert.equal(abandoned.reason, "client_closed");
      // Half an auth message, then the stream's end: the client went away mid-auth.
      const cut = await dial();
      const s = await cut.createBidirectionalStream();
      const w = s.writable.getWriter();
      await w.write(frame(new Uint8Array(600)).subarray(0, 100));
      await w.close();
      await n1.waitFor("auth.abandoned", (e) => e.remote !== abandoned.remote);
      cut.close();
      // A complete but wrong message (version 0) is still a refusal.
      const bad = await dial();
      const b = (await bad.createBidirectionalStream()).writable.getWriter();
      await b.write(frame(new Uint8Array(600)));
      await b.close();
      const denied = await n1.waitFor("auth.denied");
      assert.equal(denied.reason, "bad_version");
      bad.close();
      assert.equal(n1.events.filter((e) => e.message === "auth.denied").length, 1);
    }),
);

Deno.test(
  "e2e: a client killed with -9 in the middle of auth is abandoned (the idle timeout), not refused",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const caPem = join(fx.dir, "pki", "ca.crt");
      const n1 = await start(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
      // A real process (a laptop that lost power): half an auth message, then silence. It
      // asks for a 2 s idle timeout, so the connection's (the smaller of both ends') runs out
      // before the node's 5 s auth limit: only then can the node tell a vanished client from
      // a slow one. (Agents ask for 10 s, lib/protocol.ts, to outlast their own stalls.)
      const script = `
        const conn = await Deno.connectQuic({ hostname: "127.0.0.1", port: ${fx.ports.n1},
          serverName: ${JSON.stringify(nodeServerName("acme", "n1"))},
          caCerts: [await Deno.readTextFile(${JSON.stringify(caPem)})],
          alpnProtocols: [${JSON.stringify(ALPN)}], maxIdleTimeout: 2000 });
        const w = (await conn.createBidirectionalStream()).writable.getWriter();
        const half = new Uint8Array(300); half[0] = 2; // a 512-byte frame, 300 bytes of it
        await w.write(half);
        console.log("sent");
        await new Promise(() => {});`;
      const client = new Deno.Command(Deno.execPath(), {
        args: ["eval", "--unstable-net", script],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const reader = client.stdout.pipeThrough(new TextDecoderStream()).getReader();
      assert.match((await reader.read()).value ?? "", /sent/);
      client.kill("SIGKILL");
      await client.status;
      reader.releaseLock();
      const gone = await n1.waitFor("auth.abandoned", undefined, 15_000);
      assert.equal(gone.reason, "client_closed");
      assert.equal(n1.events.filter((e) => e.message === "auth.denied").length, 0);
    }),
);

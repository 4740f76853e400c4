/**
 * An agent whose process is not scheduled for a few seconds (a laptop that sleeps a moment, a
 * descheduled VM, a machine at load 30) must not cut tunnels to healthy nodes nor refuse
 * requests: real agents stopped with SIGSTOP and resumed with SIGCONT.
 */
import assert from "node:assert/strict";
import { startNodeAndAlice, withFixture } from "./fixture.ts";
import { echoRoundTrip, ExactReader, socksConnect } from "./harness.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false, ignore: Deno.build.os !== "linux" };

/** Longer than the 2 s QUIC idle timeout and the 1-1.6 s ping timeout the soak's stalls beat
 * (the soak measured user stalls of 1-4.2 s at load 25-41). */
const STALL_MS = 2_800;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function stall(pid: number, ms: number) {
  Deno.kill(pid, "SIGSTOP");
  try {
    await sleep(ms);
  } finally {
    Deno.kill(pid, "SIGCONT");
  }
}

/** One line out and back on a tunnel that stays open. */
async function echoes(conn: Deno.TcpConn, reader: ExactReader, text: string) {
  const out = new TextEncoder().encode(text);
  for (let o = 0; o < out.length;) o += await conn.write(out.subarray(o));
  assert.equal(new TextDecoder().decode(await reader.read(out.length)), text);
}

/** One line, then the half-close that ends a tunnel. */
async function echoesOnce(conn: Deno.TcpConn, text: string) {
  const back = await echoRoundTrip(conn, new TextEncoder().encode(text));
  assert.equal(new TextDecoder().decode(back), text);
}

for (const who of ["user", "node"] as const) {
  Deno.test(
    `e2e: the ${who} agent stopped ${STALL_MS} ms: an idle tunnel through it still echoes`,
    e2e,
    () =>
      withFixture(async (fx, start) => {
        const { n1, alice, user } = await startNodeAndAlice(fx, start);
        const s = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
        assert.equal(s.reply, 0);
        const reader = new ExactReader(s.conn);
        try {
          await echoes(s.conn, reader, "before");
          await alice.waitFor("peer.up", (e) => e.node === "n1");
          await stall((who === "user" ? alice : n1).child.pid, STALL_MS);
          await echoes(s.conn, reader, "after the stall");
          const closes = alice.events.filter((e) => e.message === "tunnel.close");
          assert.deepEqual(closes, [], "the idle tunnel was closed");
          // The stalled agent says so, with how long.
          const stalled = await (who === "user" ? alice : n1).waitFor("agent.stalled");
          assert.ok(
            Number(stalled.stalled_ms) >= STALL_MS - 500,
            `agent.stalled ${stalled.stalled_ms} ms for a ${STALL_MS} ms stop`,
          );
          if (who === "user") {
            const downs = alice.events.filter((e) => e.message === "peer.down");
            assert.deepEqual(downs, [], "a healthy node marked down for our own stall");
          }
          // Still usable for new requests.
          const t = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
          assert.equal(t.reply, 0);
          await echoesOnce(t.conn, "new");
          t.conn.close();
        } finally {
          s.conn.close();
        }
      }),
  );
}

Deno.test(
  `e2e: the user agent stopped ${STALL_MS} ms inside its first handshake: the request succeeds`,
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const { n1, alice, user } = await startNodeAndAlice(fx, start);
      const request = socksConnect(user.socks, "echo.flor", fx.ports.echo);
      // The agent has read the request and dials n1 (no connection yet): stop it there.
      await sleep(20);
      await stall(alice.child.pid, STALL_MS);
      const s = await request;
      try {
        assert.equal(s.reply, 0, `refused: ${JSON.stringify(alice.events.slice(-3))}`);
        await echoesOnce(s.conn, "first");
      } finally {
        s.conn.close();
      }
      // Info events reach the log within lib/log.ts LOG_FLUSH_MS, not at once.
      await n1.waitFor("tunnel.open");
    }),
);

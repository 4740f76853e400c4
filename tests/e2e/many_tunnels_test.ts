/**
 * Many tunnels to one node from one agent: more than one QUIC connection's worth of streams
 * (lib/protocol.ts MAX_STREAMS_PER_CONNECTION) must neither fail nor take the other tunnels
 * down with them.
 */
import assert from "node:assert/strict";
import { startNodeAndAlice, withFixture } from "./fixture.ts";
import { curl, echoRoundTrip, ExactReader, socksConnect } from "./harness.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };

const HELD = 2000;

/** Runs `f` over `items` with at most `width` at once. */
async function inBatches<T, R>(items: T[], width: number, f: (x: T) => Promise<R>) {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]);
    }
  }));
  return out;
}

/** `f()`, or an error naming `what` after `ms`: a tunnel that hangs fails the test, with why. */
async function within<T>(ms: number, what: () => string, f: () => Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what()}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([f(), late]);
  } finally {
    clearTimeout(timer);
  }
}

async function rssMiB(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) / 1024;
}

Deno.test(
  "e2e: 300 concurrent curls and 2,000 held tunnels to one node",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const { n1, alice, user } = await startNodeAndAlice(fx, start);
      const proxy = `127.0.0.1:${user.socks}`;
      /** Refusals by reason, with one example each: what a failure message needs. */
      const refusals = () => {
        const by = new Map<string, { n: number; detail: unknown }>();
        for (const e of alice.events.filter((e) => e.message === "socks.refused")) {
          const r = by.get(String(e.reason)) ?? { n: 0, detail: e.detail };
          r.n++;
          by.set(String(e.reason), r);
        }
        const node = new Map<string, number>();
        for (const e of n1.events) node.set(e.message, (node.get(e.message) ?? 0) + 1);
        return JSON.stringify(Object.fromEntries(by)) + " node: " +
          JSON.stringify(Object.fromEntries(node));
      };

      // A user's agent is connected already when a browser opens many tunnels at once: what is
      // tested is the load on that connection, not a handshake under 300 process starts.
      const warm = await curl([
        "-sS",
        "--socks5-hostname",
        proxy,
        `http://web.flor:${fx.ports.web}/`,
      ]);
      assert.equal(warm.code, 0, warm.stderr);
      // 300 at once, as `seq 300 | xargs -P300 curl` would.
      const results = await Promise.all(
        Array.from({ length: 300 }, () =>
          curl([
            "-sS",
            "--max-time",
            "60",
            "--socks5-hostname",
            proxy,
            `http://web.flor:${fx.ports.web}/`,
          ])),
      );
      const failed = results.filter((r) => r.code !== 0 || r.stdout !== "hello from web\n");
      assert.equal(
        failed.length,
        0,
        `${failed.length} of 300 curls failed, e.g. exit ${failed[0]?.code}: ${failed[0]?.stderr}` +
          refusals(),
      );

      // 2,000 tunnels held open, each proven to work, then new ones while they stay up.
      let opened = 0;
      const held = await inBatches(Array.from({ length: HELD }, (_, i) => i), 100, (i) =>
        within(30_000, () =>
          `held tunnel ${i} (${opened} open) ${refusals()}`, async () => {
          const s = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
          assert.equal(s.reply, 0, `held tunnel ${i}: SOCKS reply ${s.reply} ${refusals()}`);
          await s.conn.write(Uint8Array.of(i & 0xff));
          const reader = new ExactReader(s.conn);
          assert.equal((await reader.read(1))[0], i & 0xff);
          opened++;
          return { conn: s.conn, reader };
        }));
      if (Deno.build.os === "linux") {
        console.log(
          `with ${HELD} tunnels held: node RSS ${(await rssMiB(n1.child.pid)).toFixed(0)} MiB, ` +
            `client RSS ${(await rssMiB(alice.child.pid)).toFixed(0)} MiB`,
        );
      }
      const fresh = await inBatches(
        Array.from({ length: 50 }, (_, i) =>
          i),
        50,
        (i) =>
          within(30_000, () =>
            `new tunnel ${i}`, async () => {
            const s = await socksConnect(user.socks, "echo.flor", fx.ports.echo);
            assert.equal(s.reply, 0, `new tunnel ${i} beside ${HELD} held ones: reply ${s.reply}`);
            const back = await echoRoundTrip(s.conn, new TextEncoder().encode(`fresh ${i}`));
            s.conn.close();
            return new TextDecoder().decode(back);
          }),
      );
      assert.deepEqual(
        fresh,
        Array.from({ length: 50 }, (_, i) => `fresh ${i}`),
      );
      // Every held tunnel still carries bytes both ways.
      await inBatches(held, 200, ({ conn, reader }) =>
        within(30_000, () =>
          "a held tunnel", async () => {
          await conn.write(Uint8Array.of(0x5a));
          assert.equal((await reader.read(1))[0], 0x5a);
          conn.close();
        }));
      assert.equal(
        n1.events.filter((e) =>
          e.message === "tunnel.over_capacity"
        ).length,
        0,
        "the node refused tunnels for capacity",
      );
    }),
);

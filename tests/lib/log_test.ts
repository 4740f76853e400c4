import assert from "node:assert/strict";
import {
  eventLog,
  flushLog,
  formatEvent,
  LOG_BUFFER_BYTES,
  LOG_FLUSH_MS,
  setupLogging,
} from "../../lib/log.ts";

const T = "2026-12-02T10:00:00.000Z";

Deno.test("formatEvent: fixed keys first, then the fields, as one JSON line", () => {
  assert.equal(
    formatEvent(T, "info", "florete.socks", "tunnel.open", { side: "client", n: 3, ok: true }),
    `{"@timestamp":"${T}","level":"INFO","message":"tunnel.open","logger":"florete.socks",` +
      `"side":"client","n":3,"ok":true}\n`,
  );
  assert.equal(
    formatEvent(T, "warning", "florete.agent", "x.y", { level: "mine", z: null, u: undefined }),
    `{"@timestamp":"${T}","level":"mine","message":"x.y","logger":"florete.agent","z":null}\n`,
  );
});

Deno.test("formatEvent: errors, bigints and cycles are written, C1 controls escaped", () => {
  const err = new Error("boom", { cause: "disk" });
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  const line = formatEvent(T, "error", "florete.agent", "agent.crash", {
    error: err,
    big: 10n,
    cyclic,
    text: "a\u009b[31mb",
  });
  assert.ok(!line.includes("\u009b"), line);
  const parsed = JSON.parse(line);
  assert.deepEqual(parsed.error, {
    name: "Error",
    message: "boom",
    stack: err.stack,
    cause: "disk",
  });
  assert.equal(parsed.big, "10");
  assert.deepEqual(parsed.cyclic, { a: 1, self: "[Circular]" });
  assert.equal(parsed.text, "a\u009b[31mb");
  assert.equal(parsed.level, "ERROR");
});

/** Installs a sink that records each write as text. */
function capture(level: "debug" | "info" | "warning" | "error" = "info") {
  const writes: string[] = [];
  const dec = new TextDecoder();
  setupLogging(level, (b) => writes.push(dec.decode(b)));
  const events = () => writes.join("").split("\n").filter(Boolean).map((l) => JSON.parse(l));
  return { writes, events };
}

Deno.test("info events are gathered; a warning writes them first, in order, at once", () => {
  const c = capture();
  const log = eventLog("test");
  log.info("tunnel.open", { n: 1 });
  log.info("tunnel.close", { n: 1 });
  assert.equal(c.writes.length, 0);
  log.warn("peer.slow", { node: "n1" });
  assert.equal(c.writes.length, 1);
  assert.deepEqual(c.events().map((e) => e.message), ["tunnel.open", "tunnel.close", "peer.slow"]);
  log.error("agent.crash", {});
  assert.equal(c.writes.length, 2);
  flushLog();
});

Deno.test("gathered events are written within LOG_FLUSH_MS, or at once past LOG_BUFFER_BYTES", async () => {
  const c = capture();
  const log = eventLog("test");
  log.info("tunnel.open", {});
  await new Promise((r) => setTimeout(r, LOG_FLUSH_MS * 3));
  assert.deepEqual(c.events().map((e) => e.message), ["tunnel.open"]);
  log.info("big", { pad: "x".repeat(LOG_BUFFER_BYTES) });
  assert.equal(c.writes.length, 2);
  flushLog();
});

Deno.test("events below the configured level are not written", () => {
  const c = capture("warning");
  const log = eventLog("test");
  log.debug("d");
  log.info("i");
  log.warn("w");
  flushLog();
  assert.deepEqual(c.events().map((e) => e.message), ["w"]);
  const d = capture("debug");
  log.debug("d");
  flushLog();
  assert.deepEqual(d.events().map((e) => e.message), ["d"]);
});

/** Runs a script that logs with the real stdout sink and ends as `end` says. */
async function runLogging(end: string): Promise<{ code: number; messages: string[] }> {
  const script = `
    import { eventLog, setupLogging } from ${
    JSON.stringify(new URL("../../lib/log.ts", import.meta.url).href)
  };
    setupLogging("info");
    const log = eventLog("test");
    log.info("tunnel.open", { n: 1 });
    log.info("tunnel.close", { n: 1 });
    ${end}
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdout: "piped",
    stderr: "null",
  }).output();
  const messages = new TextDecoder().decode(out.stdout).split("\n").filter(Boolean)
    .map((l) => JSON.parse(l).message);
  return { code: out.code, messages };
}

Deno.test("gathered events reach stdout on Deno.exit, at the end of the event loop and on an uncaught error", async () => {
  for (
    const [end, code] of [
      ["Deno.exit(3);", 3],
      ["", 0],
      ["setTimeout(() => { throw new Error('boom'); }, 0);", 1],
      ["Promise.reject(new Error('boom'));", 1],
    ] as const
  ) {
    const r = await runLogging(end);
    assert.equal(r.code, code, end);
    assert.deepEqual(r.messages, ["tunnel.open", "tunnel.close"], end);
  }
});

/**
 * A tunnel cut in the middle must not look complete: the side that is still alive resets its
 * TCP connection, so a client reading to EOF (curl with a close-delimited body) reports an
 * error instead of keeping a short file, and a target sees the reset too.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startNodeAndAlice, withFixture } from "./fixture.ts";
import { curl, freeTcpPort, socksConnect } from "./harness.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false, ignore: Deno.build.os !== "linux" };

/** An HTTP server with no Content-Length: its body ends when the connection does, so only
 * a reset can tell a client that the download was cut. It streams 16 KiB every 10 ms. */
function startEndlessHttp(port: number) {
  const l = Deno.listen({ hostname: "127.0.0.1", port });
  const conns = new Set<Deno.TcpConn>();
  (async () => {
    for await (const c of l) {
      conns.add(c);
      (async () => {
        await c.read(new Uint8Array(4096)); // the request (one read is enough for curl's)
        await c.write(new TextEncoder().encode("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"));
        const chunk = new Uint8Array(16 * 1024).fill(0x61);
        for (;;) {
          for (let o = 0; o < chunk.length;) o += await c.write(chunk.subarray(o));
          await new Promise((r) => setTimeout(r, 10));
        }
      })().catch(() => {}).finally(() => conns.delete(c));
    }
  })().catch(() => {});
  return {
    close() {
      l.close();
      for (const c of conns) c.close();
    },
  };
}

/** A target that reads until EOF or an error and says which; `received` resolves once
 * `expect` bytes have arrived. */
function startSink(port: number, expect: number) {
  const l = Deno.listen({ hostname: "127.0.0.1", port });
  const outcome = Promise.withResolvers<{ bytes: number; end: string }>();
  const received = Promise.withResolvers<void>();
  outcome.promise.then(() => received.resolve()); // an early end fails the byte count below
  (async () => {
    const c = await l.accept();
    const buf = new Uint8Array(64 * 1024);
    let bytes = 0;
    try {
      for (;;) {
        const n = await c.read(buf);
        if (n === null) return outcome.resolve({ bytes, end: "eof" });
        bytes += n;
        if (bytes >= expect) received.resolve();
      }
    } catch (e) {
      outcome.resolve({ bytes, end: (e as Error).name });
    } finally {
      c.close();
    }
  })().catch((e) => outcome.reject(e));
  return { outcome: outcome.promise, received: received.promise, close: () => l.close() };
}

/** What the client uploads before its agent is killed: a few QUIC packets' worth. */
const UPLOAD_BYTES = 32 * 1024;
/** A hang guard, not what the test is about: milliseconds on loopback, seconds under load. */
const UPLOAD_WITHIN_MS = 20_000;

const streamPort = freeTcpPort();
const sinkPort = freeTcpPort();

Deno.test(
  "e2e: a node killed mid-download: curl reports an error, not a complete short file",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const http = startEndlessHttp(streamPort);
      try {
        const { n1, alice, user } = await startNodeAndAlice(fx, start);
        const out = join(fx.root, "download");
        const download = curl([
          "-sS",
          "--max-time",
          "20",
          "--socks5-hostname",
          `127.0.0.1:${user.socks}`,
          "-o",
          out,
          `http://stream.flor:${streamPort}/`,
        ]);
        await alice.waitFor("tunnel.open", (e) => e.service === "stream");
        await new Promise((r) => setTimeout(r, 500)); // some of the body is on its way
        await n1.stop("SIGKILL");
        const r = await download;
        const got = (await Deno.stat(out)).size;
        assert.ok(got > 0, "curl received part of the body before the cut");
        assert.ok(
          r.code === 56 || r.code === 18,
          `curl exit ${r.code} after ${got} bytes (want 56 or 18: an error): ${r.stderr}`,
        );
        const closed = await alice.waitFor("tunnel.close", (e) => e.service === "stream");
        assert.equal(closed.reset, true);
      } finally {
        http.close();
      }
    }, [{ name: "stream", node: "n1", port: streamPort, allow: "group:devs" }]),
);

Deno.test(
  "e2e: a client agent killed mid-upload: the node resets its connection to the target",
  e2e,
  () =>
    withFixture(async (fx, start) => {
      const sink = startSink(sinkPort, UPLOAD_BYTES);
      try {
        const { alice, user } = await startNodeAndAlice(fx, start);
        const s = await socksConnect(user.socks, "sink.flor", sinkPort);
        assert.equal(s.reply, 0);
        await s.conn.write(new Uint8Array(UPLOAD_BYTES));
        // Killed once the upload is through, so the tunnel is cut mid-stream (the client
        // never closed it), not mid-byte: a fixed 200 ms after the node's tunnel.open was a
        // guess that a loaded machine need not honour.
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          sink.received,
          new Promise((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`the sink had not got the upload in ${UPLOAD_WITHIN_MS} ms`)),
              UPLOAD_WITHIN_MS,
            );
          }),
        ]).finally(() => clearTimeout(timer));
        await alice.stop("SIGKILL");
        const seen = await sink.outcome;
        s.conn.close();
        assert.equal(seen.bytes, UPLOAD_BYTES);
        assert.equal(seen.end, "ConnectionReset", "the target saw a clean EOF");
      } finally {
        sink.close();
      }
    }, [{ name: "sink", node: "n1", port: sinkPort, allow: "group:devs" }]),
);

/**
 * relay() over a real TCP connection on 127.0.0.1; the tunnel side is an in-memory duplex
 * the test ends cleanly or in error, as a QUIC stream would.
 */
import assert from "node:assert/strict";
import { type Duplex, relay, tcpDuplex } from "../../lib/relay.ts";

const linux = Deno.build.os === "linux";

/** A tunnel side the test drives: what it enqueues reaches the TCP client. */
function fakeStream() {
  let ctl!: ReadableStreamDefaultController<Uint8Array>;
  const received: Uint8Array[] = [];
  const stream: Duplex = {
    readable: new ReadableStream({ start: (c) => void (ctl = c) }),
    writable: new WritableStream({ write: (c) => void received.push(c) }),
  };
  return { stream, ctl, received };
}

async function tcpPair() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({
    hostname: "127.0.0.1",
    port: (listener.addr as Deno.NetAddr).port,
  });
  const server = await listener.accept();
  listener.close();
  return { client, server };
}

/** Reads until EOF ("eof") or an error (its class name). */
async function readOutcome(conn: Deno.TcpConn): Promise<{ bytes: number; end: string }> {
  const buf = new Uint8Array(64 * 1024);
  let bytes = 0;
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) return { bytes, end: "eof" };
      bytes += n;
    }
  } catch (e) {
    return { bytes, end: (e as Error).name };
  } finally {
    conn.close();
  }
}

Deno.test({
  name: "relay: a tunnel that ends in error resets the TCP connection (the client sees an error)",
  ignore: !linux,
  async fn() {
    const { client, server } = await tcpPair();
    const { stream, ctl } = fakeStream();
    const done = relay(tcpDuplex(server), stream);
    ctl.enqueue(new Uint8Array(1000));
    const outcome = readOutcome(client);
    await new Promise((r) => setTimeout(r, 50));
    ctl.error(new Error("connection lost"));
    const r = await done;
    assert.ok(r.error, "the relay reports the error");
    assert.equal(r.reset, true);
    assert.deepEqual(await outcome, { bytes: 1000, end: "ConnectionReset" });
  },
});

Deno.test("relay: a tunnel that ends cleanly ends the TCP connection with a FIN", async () => {
  const { client, server } = await tcpPair();
  const { stream, ctl } = fakeStream();
  const done = relay(tcpDuplex(server), stream);
  ctl.enqueue(new Uint8Array(1000));
  ctl.close();
  const outcome = readOutcome(client); // reads to EOF, then closes: the relay's other half ends
  assert.deepEqual(await outcome, { bytes: 1000, end: "eof" });
  const r = await done;
  assert.equal(r.error, undefined);
  assert.equal(r.reset, false);
});

Deno.test({
  name: "relay: aborting (revocation, shutdown) resets the TCP connection",
  ignore: !linux,
  async fn() {
    const { client, server } = await tcpPair();
    const { stream } = fakeStream();
    const stop = new AbortController();
    const done = relay(tcpDuplex(server), stream, { signal: stop.signal });
    const outcome = readOutcome(client);
    await new Promise((r) => setTimeout(r, 20));
    stop.abort(new Error("revoked"));
    const r = await done;
    assert.equal(r.reset, true);
    assert.equal((await outcome).end, "ConnectionReset");
  },
});

Deno.test({
  name: "relay: 200 tunnels cut at once each reset their own connection, not a bystander",
  ignore: !linux,
  async fn() {
    const pairs = await Promise.all(Array.from({ length: 200 }, () => tcpPair()));
    const bystander = await tcpPair();
    const fakes = pairs.map(() => fakeStream());
    const relays = pairs.map((p, i) => relay(tcpDuplex(p.server), fakes[i].stream));
    const outcomes = pairs.map((p) => readOutcome(p.client));
    await new Promise((r) => setTimeout(r, 20));
    for (const f of fakes) f.ctl.error(new Error("node gone")); // one burst, as a node dying
    const results = await Promise.all(relays);
    assert.deepEqual(results.filter((r) => !r.reset).map((r) => r.resetError), []);
    for (const o of await Promise.all(outcomes)) assert.equal(o.end, "ConnectionReset");
    // The bystander's descriptors were in every scan: it still works both ways.
    await bystander.client.write(Uint8Array.of(7));
    const b = new Uint8Array(1);
    assert.equal(await bystander.server.read(b), 1);
    bystander.client.close();
    bystander.server.close();
  },
});

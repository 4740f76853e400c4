/**
 * A tiny TCP probe for the link emulator's tests, run inside a namespace:
 *
 *   probe.ts serve PORT               echo server on 0.0.0.0:PORT; prints "listening"
 *   probe.ts rtt HOST PORT N          N × (connect, write 1 byte, read it back); prints
 *                                     {"connectMs":[...],"firstByteMs":[...]}
 *   probe.ts push HOST PORT BYTES     writes BYTES and reads them back; prints {"ms":...}
 *   probe.ts connect HOST PORT MS     one connect with a deadline; prints {"ok":bool}
 */

const CHUNK = 64 * 1024;

async function serve(port: number): Promise<void> {
  const l = Deno.listen({ hostname: "0.0.0.0", port });
  console.log("listening");
  for await (const c of l) {
    (async () => {
      const buf = new Uint8Array(CHUNK);
      for (;;) {
        const n = await c.read(buf);
        if (n === null) break;
        for (let o = 0; o < n;) o += await c.write(buf.subarray(o, n));
      }
      c.close();
    })().catch(() => {});
  }
}

async function readExactly(c: Deno.Conn, n: number): Promise<void> {
  const buf = new Uint8Array(CHUNK);
  for (let got = 0; got < n;) {
    const r = await c.read(buf.subarray(0, Math.min(CHUNK, n - got)));
    if (r === null) throw new Error(`closed after ${got} of ${n} bytes`);
    got += r;
  }
}

async function rtt(hostname: string, port: number, count: number): Promise<void> {
  const connectMs: number[] = [];
  const firstByteMs: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    const c = await Deno.connect({ hostname, port });
    connectMs.push(performance.now() - t0);
    await c.write(Uint8Array.of(42));
    await readExactly(c, 1);
    firstByteMs.push(performance.now() - t0);
    c.close();
  }
  console.log(JSON.stringify({ connectMs, firstByteMs }));
}

async function push(hostname: string, port: number, bytes: number): Promise<void> {
  const c = await Deno.connect({ hostname, port });
  const chunk = new Uint8Array(CHUNK).fill(0x5a);
  const t0 = performance.now();
  const back = readExactly(c, bytes);
  for (let sent = 0; sent < bytes;) {
    const n = Math.min(CHUNK, bytes - sent);
    for (let o = 0; o < n;) o += await c.write(chunk.subarray(o, n));
    sent += n;
  }
  await back;
  console.log(JSON.stringify({ ms: performance.now() - t0 }));
  c.close();
}

async function connect(hostname: string, port: number, ms: number): Promise<void> {
  const timeout = new Promise<false>((r) => setTimeout(() => r(false), ms));
  const ok = await Promise.race([Deno.connect({ hostname, port }).then(() => true), timeout]);
  console.log(JSON.stringify({ ok }));
  Deno.exit(0);
}

const [mode, ...args] = Deno.args;
if (mode === "serve") await serve(Number(args[0]));
else if (mode === "rtt") await rtt(args[0], Number(args[1]), Number(args[2]));
else if (mode === "push") await push(args[0], Number(args[1]), Number(args[2]));
else if (mode === "connect") await connect(args[0], Number(args[1]), Number(args[2]));
else throw new Error(`probe: unknown mode ${mode}`);

import assert from "node:assert/strict";
import {
  findSocketFd,
  getIntOption,
  matchingInodes,
  parseProcNetSockets,
  resetConnection,
  setIntOption,
  SO_RCVBUF,
  sockaddrPort,
  SocketOptionError,
} from "../../lib/socket_options.ts";

const linux = Deno.build.os === "linux";

// Two rows from a real /proc/net/tcp (listener on 8080, a connection 8080 → 51000) and a
// TIME_WAIT row, which has inode 0.
const PROC_NET_TCP =
  `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C738 01 00000000:00000000 00:00000000 00000000     0        0 41002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:C739 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
`;

Deno.test("socket_options: /proc/net rows are parsed by port and inode", () => {
  const rows = parseProcNetSockets(PROC_NET_TCP);
  assert.equal(rows.length, 3);
  assert.deepEqual(rows[1], {
    localHex: "0100007F",
    localPort: 8080,
    remoteHex: "0100007F",
    remotePort: 51000,
    inode: 41002,
  });
  assert.deepEqual(matchingInodes(rows, { protocol: "tcp", localPort: 8080 }), [41001, 41002]);
  assert.deepEqual(matchingInodes(rows, { protocol: "tcp", localPort: 8080, remotePort: 0 }), [
    41001,
  ]);
  assert.deepEqual(
    matchingInodes(rows, { protocol: "tcp", localPort: 8080, remotePort: 51001 }),
    [], // the TIME_WAIT row has no socket left to find
  );
});

Deno.test("socket_options: short and garbled rows are skipped, not thrown on", () => {
  assert.deepEqual(parseProcNetSockets(""), []);
  assert.deepEqual(parseProcNetSockets("header\n  0: 0100007F:1F90\n garbage line here\n"), []);
  const cut = PROC_NET_TCP.slice(0, PROC_NET_TCP.indexOf("   1:") + 20);
  assert.equal(parseProcNetSockets(cut).length, 1);
});

Deno.test({
  name: "socket_options: a QUIC endpoint's receive buffer is raised and read back",
  ignore: !linux,
  fn() {
    const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
    try {
      const fd = findSocketFd({ protocol: "udp", localPort: endpoint.addr.port });
      const before = getIntOption(fd, SO_RCVBUF);
      setIntOption(fd, SO_RCVBUF, 1 << 20);
      const after = getIntOption(fd, SO_RCVBUF);
      // Linux doubles the value for its bookkeeping, capped by net.core.rmem_max.
      const max = Number(Deno.readTextFileSync("/proc/sys/net/core/rmem_max").trim());
      assert.equal(after, 2 * Math.min(1 << 20, max), `before ${before}`);
    } finally {
      endpoint.close();
    }
  },
});

Deno.test({
  name: "socket_options: a socket that is not ours is not found",
  ignore: !linux,
  fn() {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    assert.throws(
      () => findSocketFd({ protocol: "tcp", localPort: port }),
      (e) =>
        e instanceof SocketOptionError && e.code === "not_found" &&
        e.message === `no tcp socket on local port ${port} socket in /proc/net`,
    );
  },
});

/** A connected TCP pair on 127.0.0.1 and the listener that made it. */
async function tcpPair() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = listener.accept();
  const client = await Deno.connect({
    hostname: "127.0.0.1",
    port: (listener.addr as Deno.NetAddr).port,
  });
  return { listener, client, server: await accepting };
}

Deno.test({
  name: "socket_options: resetConnection makes the peer read a reset, not an end of stream",
  ignore: !linux,
  async fn() {
    const { listener, client, server } = await tcpPair();
    try {
      await client.write(new Uint8Array([1, 2, 3]));
      const buf = new Uint8Array(16);
      assert.equal(await server.read(buf), 3);
      resetConnection(server);
      server.close();
      await assert.rejects(() => client.read(buf), Deno.errors.ConnectionReset);
    } finally {
      client.close();
      listener.close();
    }
  },
});

Deno.test({
  name: "socket_options: without reset, the same close is a clean end of stream",
  ignore: !linux,
  async fn() {
    const { listener, client, server } = await tcpPair();
    try {
      server.close();
      assert.equal(await client.read(new Uint8Array(16)), null);
    } finally {
      client.close();
      listener.close();
    }
  },
});

Deno.test("socket_options: sockaddr ports are read for IPv4 and IPv6 only", () => {
  // struct sockaddr_in: family 2 (host order, little-endian here), port 8080 big-endian.
  assert.equal(sockaddrPort(Uint8Array.of(2, 0, 0x1f, 0x90, 127, 0, 0, 1)), 8080);
  assert.equal(sockaddrPort(Uint8Array.of(10, 0, 0xc7, 0x38, 0, 0, 0, 0)), 51000);
  assert.equal(sockaddrPort(Uint8Array.of(1, 0, 0x1f, 0x90)), undefined, "AF_UNIX");
});

const MODULE = JSON.stringify(new URL("../../lib/socket_options.ts", import.meta.url).href);

/** Runs `script` with explicit permissions: Deno 2.9.6 then refuses reads of /proc/net and
 * /proc/self/fd, so the descriptor is found through libc.
 * `deno run` on a file, not `deno eval`: eval has every permission whatever the flags say. */
async function withoutProc(script: string): Promise<string> {
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    const closed = `try { Deno.readDirSync("/proc/self/fd"); throw new Error("/proc is open"); }
      catch (e) { if (!(e instanceof Deno.errors.NotCapable)) throw e; }\n`;
    await Deno.writeTextFile(file, closed + script);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--unstable-net", "--allow-net", "--allow-read", "--allow-ffi", file],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, err);
    return new TextDecoder().decode(out.stdout);
  } finally {
    await Deno.remove(file);
  }
}

Deno.test({
  name: "socket_options: without --allow-all (/proc closed to Deno) the socket is found by scan",
  ignore: !linux,
  async fn() {
    const out = await withoutProc(`
      import { findSocketFd, getIntOption, setIntOption, SO_RCVBUF } from ${MODULE};
      // TCP first: a random port is far less often taken over UDP by the tests running
      // alongside than the other way round.
      const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: tcp.addr.port });
      const fd = findSocketFd({ protocol: "udp", localPort: endpoint.addr.port });
      setIntOption(fd, SO_RCVBUF, 1 << 20);
      console.log(getIntOption(fd, SO_RCVBUF));
      tcp.close();
      endpoint.close();`);
    // The UDP socket, not the TCP listener on the same port number; Linux reports double.
    assert.ok(Number(out) >= 2 << 20, out);
  },
});

/** A script body (after an import of findSocketFd): a connected pair whose server side is looked
 * up, then closed, and a new pair that takes the freed descriptors; prints what each lookup
 * gave, the old socket's after the new one's (so the last scan holds the reused descriptor). */
const REUSE_SCRIPT = `
  const tcpPair = ${tcpPair.toString()};
  const first = await tcpPair();
  const ports = (c) => ({
    protocol: "tcp",
    localPort: c.localAddr.port,
    remotePort: c.remoteAddr.port,
  });
  const old = ports(first.server);
  const oldFd = findSocketFd(old);
  first.server.close();
  first.client.close();
  first.listener.close();
  const second = await tcpPair();
  const newFd = findSocketFd(ports(second.server));
  let stale;
  try {
    stale = findSocketFd(old);
  } catch (e) {
    stale = e.code + ": " + e.message;
  }
  console.log(JSON.stringify({ oldFd, newFd, stale }));
  for (const c of [second.server, second.client, second.listener]) c.close();`;

function assertNotReused(out: string, message: RegExp) {
  const r = JSON.parse(out);
  // The new pair took the old descriptors (lowest free first), so a stale lookup would act
  // on the new connection: it must be not_found instead.
  assert.ok(Number.isInteger(r.newFd), out);
  assert.match(r.stale, message, out);
}

Deno.test({
  name: "socket_options: a descriptor reused since the last scan is not taken for the old socket",
  ignore: !linux,
  async fn() {
    const out = await withoutProc(`import { findSocketFd } from ${MODULE};` + REUSE_SCRIPT);
    assertNotReused(out, /^not_found: no descriptor of this process is the tcp socket/);
    const inProcess = new Deno.Command(Deno.execPath(), {
      args: ["eval", "--allow-all", `import { findSocketFd } from ${MODULE};` + REUSE_SCRIPT],
      stdout: "piped",
      stderr: "piped",
    });
    const o = await inProcess.output();
    assert.equal(o.code, 0, new TextDecoder().decode(o.stderr));
    assertNotReused(
      new TextDecoder().decode(o.stdout),
      /^not_found: no tcp socket on local port \d+ to remote port \d+ socket in \/proc\/net$/,
    );
  },
});

Deno.test({
  name: "socket_options: without --allow-all, 200 connections reset at once each read a reset",
  ignore: !linux,
  async fn() {
    const out = await withoutProc(`
      import { resetConnection } from ${MODULE};
      const tcpPair = ${tcpPair.toString()};
      const pairs = [];
      for (let i = 0; i < 200; i++) pairs.push(await tcpPair());
      for (const p of pairs) resetConnection(p.server);
      for (const p of pairs) p.server.close();
      let resets = 0;
      for (const p of pairs) {
        try {
          await p.client.read(new Uint8Array(1));
        } catch (e) {
          if (e instanceof Deno.errors.ConnectionReset) resets++;
        }
        p.client.close();
        p.listener.close();
      }
      console.log(resets);`);
    assert.equal(Number(out), 200);
  },
});

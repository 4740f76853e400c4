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
      (e) => e instanceof SocketOptionError && e.code === "not_found",
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

Deno.test({
  name: "socket_options: without --allow-all (/proc closed to Deno) the socket is found by scan",
  ignore: !linux,
  async fn() {
    const script = `
      import { findSocketFd, getIntOption, setIntOption, SO_RCVBUF } from ${
      JSON.stringify(new URL("../../lib/socket_options.ts", import.meta.url).href)
    };
      const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
      const tcp = Deno.listen({ hostname: "127.0.0.1", port: endpoint.addr.port });
      const fd = findSocketFd({ protocol: "udp", localPort: endpoint.addr.port });
      setIntOption(fd, SO_RCVBUF, 1 << 20);
      console.log(getIntOption(fd, SO_RCVBUF));
      tcp.close();
      endpoint.close();`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--unstable-net", "--allow-net", "--allow-read", "--allow-ffi", script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, err);
    // The UDP socket, not the TCP listener on the same port number; Linux reports double.
    assert.ok(Number(new TextDecoder().decode(out.stdout)) >= 2 << 20, err);
  },
});

/**
 * flor-gw's edge against real clients on loopback: curl (correct passwords from one busy
 * source), raw SOCKS sockets from this process (source 127.0.0.1, inside allow_cidr), and
 * perl sockets bound to 127.0.1.9 (outside it) or closed with a reset (a port scan).
 *
 *   curl / sockets ── SOCKS5 127.0.0.1 ── flor-gw ── QUIC ── n1 ── HTTP "files"
 *
 * allow_cidr is 127.0.0.0/28: 127.0.0.1 is a LAN client, 127.0.1.9 is not.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type AgentProcess,
  ExactReader,
  florctlOk,
  freeTcpPort,
  freeUdpPort,
  runToEnd,
  serviceAddArgs,
  startAgentProcess,
} from "./harness.ts";

const OUTSIDE = "127.0.1.9";

interface Gateway {
  gw: AgentProcess;
  socks: number;
  metrics: number;
  password: string;
  url: string;
  metric(name: string, labels?: string): Promise<number>;
}

/** n1 serving `files` (HTTP) and flor-gw `office` with client `printer`; `edit` may change
 * flor-gw.yaml before it starts. */
async function withGateway(
  body: (g: Gateway) => Promise<void>,
  edit: (yaml: string) => string = (y) => y,
) {
  const root = await Deno.makeTempDir({ prefix: "florete-gwedge-" });
  const dir = join(root, "cluster");
  const c = (...args: string[]) => florctlOk([...args, "--dir", dir]);
  const http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("lan files\n"),
  );
  const agents: AgentProcess[] = [];
  try {
    const socks = freeTcpPort();
    const metrics = freeTcpPort();
    await c("init", "acme");
    await c("node", "add", "n1", "--endpoint", `127.0.0.1:${freeUdpPort()}`);
    await c(
      "gateway",
      "add",
      "office",
      "--listen",
      `127.0.0.1:${socks}`,
      "--allow-cidr",
      "127.0.0.0/28",
    );
    await c(...serviceAddArgs("files", "n1", `127.0.0.1:${http.addr.port}`, "gateway:office"));
    const added = await c("gateway", "client", "add", "office", "printer", "--services", "files");
    const password = /password \(shown once[^)]*\): (\S+)/.exec(added)![1];
    await c("bundle", "node", "n1", "--out", join(root, "b-n1"), "--metrics", "off");
    await c(
      "bundle",
      "gateway",
      "office",
      "--out",
      join(root, "b-gw"),
      "--metrics",
      `127.0.0.1:${metrics}`,
    );
    const gwYaml = join(root, "b-gw", "flor-gw.yaml");
    await Deno.writeTextFile(gwYaml, edit(await Deno.readTextFile(gwYaml)));
    agents.push(await startAgentProcess({ config: join(root, "b-n1", "flor.yaml") }));
    const gw = await startAgentProcess({ program: "flor-gw", config: gwYaml });
    agents.push(gw);
    await body({
      gw,
      socks,
      metrics,
      password,
      url: `http://files.flor:${http.addr.port}/`,
      async metric(name, labels = "") {
        const text = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
        const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `));
        return line ? Number(line.split(" ")[1]) : 0;
      },
    });
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await http.shutdown();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

/** `n` curls through the gateway, `parallel` at a time; their HTTP codes ("000" = failed). */
async function curls(g: Gateway, n: number, parallel: number): Promise<string[]> {
  const proxy = `printer:${g.password}@127.0.0.1:${g.socks}`;
  const script = `seq ${n} | xargs -P ${parallel} -I{} curl -s -m 20 -o /dev/null ` +
    `-w '%{http_code}\\n' --socks5-hostname '${proxy}' '${g.url}'`;
  const r = await runToEnd("sh", ["-c", script]);
  return r.stdout.trim().split("\n");
}

/** Greeting offering username/password, then the credentials; resolves with the RFC 1929
 * status and the time from sending the credentials to reading it. */
async function login(port: number, user: string, pass: string) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const reader = new ExactReader(conn);
    await conn.write(Uint8Array.of(5, 1, 2));
    await reader.read(2);
    const u = new TextEncoder().encode(user);
    const p = new TextEncoder().encode(pass);
    const msg = Uint8Array.from([1, u.length, ...u, p.length, ...p]);
    const t0 = performance.now();
    await conn.write(msg);
    const [, status] = await reader.read(2);
    return { status, ms: performance.now() - t0 };
  } finally {
    conn.close();
  }
}

/** CPU time of each thread of process `pid` so far, in ns (schedstat counts nanoseconds where
 * /proc/PID/stat has 10 ms ticks); a password hash runs off the main thread. */
async function threadCpu(pid: number): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const t of Deno.readDir(`/proc/${pid}/task`)) {
    const line = await Deno.readTextFile(`/proc/${pid}/task/${t.name}/schedstat`).catch(() => "");
    if (line) out.set(t.name, Number(line.split(" ")[0]));
  }
  return out;
}

/** Milliseconds of CPU the process's threads used between two threadCpu readings (a thread
 * that ended between them is left out rather than subtracted). */
function cpuMsBetween(before: Map<string, number>, after: Map<string, number>): number {
  let ns = 0;
  for (const [tid, t] of after) ns += t - (before.get(tid) ?? 0);
  return ns / 1e6;
}

/** A socket bound to `source` that writes `send` and reads; prints bytes read (or "timeout"
 * after 5 s) and the ms until the gateway closed it. */
async function probeFrom(source: string, port: number, send: number[]) {
  const perl = `
    use Socket; use Time::HiRes qw(time); $SIG{PIPE} = 'IGNORE';
    socket(S, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
    bind(S, pack_sockaddr_in(0, inet_aton("${source}"))) or die "bind: $!";
    connect(S, pack_sockaddr_in(${port}, inet_aton("127.0.0.1"))) or die "connect: $!";
    my $t0 = time;
    syswrite(S, pack("C*", ${send.join(",") || "()"})) if ${send.length};
    $SIG{ALRM} = sub { print "timeout 5000\\n"; exit 0 }; alarm 5;
    my $total = 0; my $buf;
    while (1) { my $n = sysread(S, $buf, 64); last if !$n; $total += $n; }
    printf "%d %d\\n", $total, (time - $t0) * 1000;`;
  const r = await runToEnd("perl", ["-e", perl]);
  assert.equal(r.code, 0, r.stderr);
  const [bytes, ms] = r.stdout.trim().split(" ");
  return { bytes, ms: Number(ms) };
}

/** What a TCP port scan does: connect, then close with a reset (SO_LINGER 0). */
async function scanProbes(port: number, n: number) {
  const perl = `
    use Socket;
    for (1..${n}) {
      socket(S, PF_INET, SOCK_STREAM, 0) or die;
      connect(S, pack_sockaddr_in(${port}, inet_aton("127.0.0.1"))) or die "connect: $!";
      setsockopt(S, SOL_SOCKET, SO_LINGER, pack("ii", 1, 0)) or die; close S;
    }`;
  const r = await runToEnd("perl", ["-e", perl]);
  assert.equal(r.code, 0, r.stderr);
}

Deno.test("e2e: flor-gw edge: passwords, sources, caps, SOCKS4 and scans", {
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  await withGateway(async (g) => {
    await t.step("unknown and known usernames cost the same to refuse", async () => {
      const known: number[] = [];
      const unknown: number[] = [];
      const cpu = { known: [] as number[], unknown: [] as number[] };
      const pid = g.gw.child.pid;
      // 9 of each fits the source's 20 wrong passwords; the fastest of each is the work the
      // gateway did, with the least noise from its other threads.
      for (let i = 0; i < 9; i++) {
        const k0 = await threadCpu(pid);
        const k = await login(g.socks, "printer", `wrong-${i}`);
        const u0 = await threadCpu(pid);
        const u = await login(g.socks, `nobody${i}`, `wrong-${i}`);
        cpu.unknown.push(cpuMsBetween(u0, await threadCpu(pid)));
        cpu.known.push(cpuMsBetween(k0, u0));
        assert.equal(k.status, 1);
        assert.equal(u.status, 1);
        known.push(k.ms);
        unknown.push(u.ms);
      }
      const [mk, mu] = [Math.min(...known), Math.min(...unknown)];
      const [ck, cu] = [Math.min(...cpu.known), Math.min(...cpu.unknown)];
      console.log(
        `login refusal, fastest of 9: known user ${mk.toFixed(2)} ms, unknown ${mu.toFixed(2)} ms` +
          `; gateway CPU ${ck.toFixed(2)} ms, ${cu.toFixed(2)} ms`,
      );
      // The gateway's CPU time decides, not the wall time printed beside it: on a loaded
      // machine all 9 wall-clock answers of one kind can be preempted (tests/agent/
      // socks_login_test.ts saw min 3.0 vs 3.9 ms); a refusal without a hash costs a few
      // hundredths of one.
      assert.ok(cu >= 0.5 * ck && cu <= 2 * ck, `gateway CPU: known ${ck} ms vs unknown ${cu} ms`);
    });

    await t.step("60 sequential logins with the right password all get tunnels", async () => {
      const codes = await curls(g, 60, 1);
      assert.deepEqual(codes.filter((c) => c !== "200"), [], `codes: ${codes.join(",")}`);
    });

    await t.step(
      "200 parallel connections of one client from one source all get tunnels",
      async () => {
        const t0 = performance.now();
        const codes = await curls(g, 200, 200);
        const seconds = ((performance.now() - t0) / 1000).toFixed(1);
        // Not reproduced under 3-5 busy loops (load up to 15: 200 in 2-4 s, all 200); should
        // it fail in CI, what the gateway said is the lead (which refusal, which timeout).
        const said = () =>
          g.gw.events.filter((e) => !/^info$/i.test(String(e.level)))
            .slice(-20).map((e) => JSON.stringify(e)).join("\n");
        assert.equal(codes.length, 200, `${codes.length} codes in ${seconds} s\n${said()}`);
        assert.deepEqual(
          codes.filter((c) => c !== "200"),
          [],
          `codes in ${seconds} s: ${codes.join(",")}\n${said()}`,
        );
        assert.equal(
          await g.metric("flor_auth_failures_total", '{reason="socks_password"}'),
          18,
          "only the 18 wrong logins of the first step are authentication failures",
        );
      },
    );

    await t.step("wrong passwords are still limited per source, without hashing", async () => {
      const before = await g.metric("flor_rate_limited_total", '{what="socks_login"}');
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => login(g.socks, "printer", `guess-${i}`)),
      );
      assert.ok(results.every((r) => r.status === 1));
      const limited = (await g.metric("flor_rate_limited_total", '{what="socks_login"}')) - before;
      // 20 guesses fit in the burst (8 spent above, refilled at 5/s since): the rest are not hashed.
      assert.ok(limited >= 15, `only ${limited} of 40 guesses were limited`);
    });

    await t.step("a source outside allow_cidr is closed at once, before it is read", async () => {
      const r = await probeFrom(OUTSIDE, g.socks, [5]);
      assert.equal(r.bytes, "0", "the gateway answered a source it does not serve");
      assert.ok(r.ms < 1000, `held for ${r.ms} ms`);
      await g.gw.waitFor("gateway.source_denied", (e) => e.source === OUTSIDE);
    });

    await t.step("a SOCKS4 or 4a request gets the SOCKS4 rejection", async () => {
      // curl --socks4 resolves names itself, so it is given an address; 4a sends the name.
      for (const [flag, url] of [["--socks4", "http://192.0.2.1/"], ["--socks4a", g.url]]) {
        const r = await runToEnd("curl", ["-sS", "-m", "5", flag, `127.0.0.1:${g.socks}`, url]);
        assert.equal(r.code, 97, r.stderr);
        assert.match(r.stderr, /rejected/, `${flag}: ${r.stderr}`);
      }
    });

    await t.step("a port scan is counted, not logged as a warning per probe", async () => {
      await scanProbes(g.socks, 20);
      await new Promise((r) => setTimeout(r, 300));
      const warned = g.gw.events.filter((e) => e.level === "WARNING" || e.level === "warning")
        .filter((e) => String(e.message).startsWith("socks."));
      assert.deepEqual(warned.map((e) => e.message), []);
      const counted = (await g.metric("flor_socks_errors_total", '{reason="accept_failed"}')) +
        (await g.metric("flor_socks_errors_total", '{reason="closed"}'));
      assert.ok(counted >= 20, `${counted} of 20 probes counted`);
    });

    await t.step("one source holds at most 256 SOCKS connections", async () => {
      const held: Deno.TcpConn[] = [];
      try {
        for (let i = 0; i < 256; i++) {
          held.push(await Deno.connect({ hostname: "127.0.0.1", port: g.socks }));
        }
        // Each is being served: the gateway answers a greeting on the last one.
        const last = held[255];
        await last.write(Uint8Array.of(5, 1, 2));
        assert.deepEqual(await new ExactReader(last).read(2), Uint8Array.of(5, 2));
        const extra = await Deno.connect({ hostname: "127.0.0.1", port: g.socks });
        const t0 = performance.now();
        const n = await extra.read(new Uint8Array(8)).catch(() => null);
        assert.equal(n, null, "the 257th connection was served");
        assert.ok(performance.now() - t0 < 1000);
        extra.close();
        await g.gw.waitFor("socks.connection_limit", (e) => e.scope === "source");
        assert.ok(
          (await g.metric("flor_socks_connections_refused_total", '{reason="source_limit"}')) >= 1,
        );
      } finally {
        for (const c of held) c.close();
      }
    });
  });
});

Deno.test("e2e: flor-gw edge: the total SOCKS connection cap (limits.max_socks_connections)", {
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await withGateway(async (g) => {
    const held = [];
    try {
      for (let i = 0; i < 3; i++) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: g.socks });
        held.push(conn);
        // Answered, so accepted and counted (connect alone returns from the kernel's backlog).
        await conn.write(Uint8Array.of(5, 1, 2));
        assert.deepEqual(await new ExactReader(conn).read(2), Uint8Array.of(5, 2));
      }
      const r = await probeFrom("127.0.0.2", g.socks, [5, 1, 2]);
      assert.equal(r.bytes, "0");
      assert.ok(r.ms < 1000, `held for ${r.ms} ms`);
      await g.gw.waitFor("socks.connection_limit", (e) => e.scope === "total");
      assert.equal(
        await g.metric("flor_socks_connections_refused_total", '{reason="total_limit"}'),
        1,
      );
    } finally {
      for (const c of held) c.close();
    }
    // Once they are gone (the gateway sees each EOF), new clients are served again.
    let codes: string[] = [];
    for (let i = 0; i < 20 && codes[0] !== "200"; i++) {
      await new Promise((r) => setTimeout(r, 100));
      codes = await curls(g, 1, 1);
    }
    assert.deepEqual(codes, ["200"]);
  }, (yaml) => yaml.replace(/^limits:.*$/m, "").concat("limits:\n  max_socks_connections: 3\n"));
});

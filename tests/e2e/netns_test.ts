import assert from "node:assert/strict";
import { runToEnd } from "./harness.ts";
import { canCreateNamespaces, createTestbed, type Testbed } from "./netns.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

const CAN = await canCreateNamespaces();
if (!CAN) console.warn("netns tests skipped: they need root and a working `ip netns`");

/** iputils-ping is not installed everywhere; without it a TCP connect stands in. */
const HAVE_PING = CAN && (await runToEnd("which", ["ping"])).code === 0;

/** The probe listener's port inside each namespace (private to the namespace). */
const PORT = 7000;
/** A dropped SYN is retried after 1 s; a reachable peer answers in well under that. */
const PROBE_TIMEOUT_MS = 1_500;
/** `deno eval` in a fresh namespace starts in ~100 ms; CI can be much slower. */
const LISTEN_TIMEOUT_MS = 15_000;

/** Line: lan (10.201.12.1) — (10.201.12.2) node (10.201.23.2) — (10.201.23.3) srv. */
const LAN = "10.201.12.1";
const NODE = "10.201.12.2";
const NODE_SRV_SIDE = "10.201.23.2";
const SRV = "10.201.23.3";
const LINE = {
  namespaces: ["lan", "node", "srv"],
  links: [
    { a: "lan", b: "node", aAddr: LAN, bAddr: NODE, prefix: 24 },
    { a: "node", b: "srv", aAddr: NODE_SRV_SIDE, bAddr: SRV, prefix: 24 },
  ],
};
const LINE_ROUTES = [
  { ns: "lan", to: "10.201.23.0/24", via: NODE },
  { ns: "srv", to: "10.201.12.0/24", via: NODE_SRV_SIDE },
];

/** Accepts TCP connections and answers each with the client's address as it arrived. */
const LISTENER = `
const listener = Deno.listen({ hostname: "0.0.0.0", port: Number(Deno.args[0]) });
console.log("listening");
for await (const conn of listener) {
  await conn.write(new TextEncoder().encode(conn.remoteAddr.hostname + "\\n")).catch(() => {});
  conn.close();
}
`;

/** Connects (from an optional local address), prints {ok, seenAs} or {ok: false, error}. */
const PROBE = `
import net from "node:net";
const [host, port, localAddress, timeoutMs] = Deno.args;
const done = (result) => { console.log(JSON.stringify(result)); Deno.exit(0); };
setTimeout(() => done({ ok: false, error: "timeout" }), Number(timeoutMs));
const socket = net.connect({ host, port: Number(port), localAddress: localAddress || undefined });
let seen = "";
socket.on("data", (chunk) => seen += chunk);
socket.on("end", () => done({ ok: true, seenAs: seen.trim() }));
socket.on("error", (e) => done({ ok: false, error: e.code ?? e.message }));
`;

type ProbeResult = { ok: true; seenAs: string } | { ok: false; error: string };

async function _namespaces(): Promise<string[]> {
  const r = await runToEnd("ip", ["netns", "list"]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split("\n").map((line) => line.split(" ")[0]).filter(Boolean);
}

async function _assertGone(names: string[]): Promise<void> {
  const left = (await _namespaces()).filter((n) => names.includes(n));
  assert.deepEqual(left, [], `namespaces left behind: ${left.join(", ")}`);
}

/** Starts LISTENER in `ns` and waits until it has bound. */
async function _listen(tb: Testbed, ns: string): Promise<void> {
  const child = tb.spawn(ns, [Deno.execPath(), "eval", "--no-config", LISTENER, String(PORT)]);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`listener in ${ns} not ready after ${LISTEN_TIMEOUT_MS} ms`)),
      LISTEN_TIMEOUT_MS,
    );
  });
  try {
    let out = "";
    while (!out.includes("listening")) {
      const { value, done } = await Promise.race([reader.read(), timeout]);
      if (done) {
        const err = await new Response(child.stderr).text();
        throw new Error(`listener in ${ns} exited before binding: ${err}`);
      }
      out += value;
    }
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
}

async function _probe(tb: Testbed, from: string, host: string, localAddress = "") {
  const r = await tb.run(from, [
    Deno.execPath(),
    "eval",
    "--no-config",
    PROBE,
    host,
    String(PORT),
    localAddress,
    String(PROBE_TIMEOUT_MS),
  ]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as ProbeResult;
}

/** ping when installed, else a TCP connect to the LISTENER the test started at `host`. */
async function _reachable(tb: Testbed, from: string, host: string): Promise<boolean> {
  if (HAVE_PING) return (await tb.run(from, ["ping", "-c1", "-W1", host])).code === 0;
  return (await _probe(tb, from, host)).ok;
}

Deno.test({
  name: "netns: lan reaches node over their link; srv is unreachable without a route",
  ignore: !CAN,
  ...opts,
  fn: async () => {
    const tb = await createTestbed(LINE);
    const names = Object.values(tb.ns);
    try {
      for (const short of LINE.namespaces) {
        assert.match(tb.ns[short], new RegExp(`^fl[0-9a-f]{4}p${Deno.pid}-${short}$`));
      }
      const listed = await _namespaces();
      for (const name of names) assert.ok(listed.includes(name), `${name} not in ip netns list`);

      await Promise.all([_listen(tb, "node"), _listen(tb, "srv")]);
      assert.equal(await _reachable(tb, "lan", NODE), true);
      assert.equal(await _reachable(tb, "node", SRV), true);
      assert.equal(await _reachable(tb, "lan", SRV), false);
      if (!HAVE_PING) {
        // No route at all: the kernel refuses at once rather than timing out.
        assert.deepEqual(await _probe(tb, "lan", SRV), { ok: false, error: "ENETUNREACH" });
      }
    } finally {
      await tb.destroy();
    }
    await _assertGone(names);
  },
});

Deno.test({
  name: "netns: routes plus forwarding in node carry lan's packets to srv",
  ignore: !CAN,
  ...opts,
  fn: async () => {
    const tb = await createTestbed({ ...LINE, routes: LINE_ROUTES, forwarding: ["node"] });
    try {
      await _listen(tb, "srv");
      assert.equal(await _reachable(tb, "lan", SRV), true);
      // Routed, not translated: srv sees lan's own address.
      assert.deepEqual(await _probe(tb, "lan", SRV), { ok: true, seenAs: LAN });
    } finally {
      await tb.destroy();
    }
  },
});

Deno.test({
  name: "netns: routes without forwarding in node do not reach srv",
  ignore: !CAN,
  ...opts,
  fn: async () => {
    const tb = await createTestbed({ ...LINE, routes: LINE_ROUTES });
    try {
      await _listen(tb, "srv");
      const forward = await tb.run("node", ["sysctl", "-n", "net.ipv4.ip_forward"]);
      assert.equal(forward.stdout.trim(), "0");
      assert.equal(await _reachable(tb, "lan", SRV), false);
    } finally {
      await tb.destroy();
    }
  },
});

Deno.test({
  name: "netns: addAddress gives lan an extra source address a client can bind",
  ignore: !CAN,
  ...opts,
  fn: async () => {
    const client = "10.201.1.5";
    const tb = await createTestbed({
      ...LINE,
      routes: [{ ns: "node", to: "10.201.1.0/24", via: LAN }],
    });
    try {
      await tb.addAddress("lan", `${client}/32`);
      const addrs = await tb.run("lan", ["ip", "-4", "-o", "addr", "show", "dev", "dummy0"]);
      assert.match(addrs.stdout, /inet 10\.201\.1\.5\/32/);
      await _listen(tb, "node");
      assert.deepEqual(await _probe(tb, "lan", NODE, client), { ok: true, seenAs: client });
      // Without the bind the link address is used, so the extra address is opt-in.
      assert.deepEqual(await _probe(tb, "lan", NODE), { ok: true, seenAs: LAN });
    } finally {
      await tb.destroy();
    }
  },
});

Deno.test({
  name: "netns: setLoss 1.0 makes node unreachable and setLoss 0 restores it",
  ignore: !CAN,
  ...opts,
  fn: async () => {
    const tb = await createTestbed(LINE);
    try {
      await _listen(tb, "node");
      assert.equal(await _reachable(tb, "lan", NODE), true);

      await tb.setLoss("node", 1.0);
      assert.equal(await _reachable(tb, "lan", NODE), false);
      // Only packets leaving the namespace are dropped; node still talks to itself.
      assert.equal(await _reachable(tb, "node", NODE), true);

      await tb.setLoss("node", 0.25);
      const rules = await tb.run("node", ["nft", "list", "table", "inet", "florete_loss"]);
      assert.match(rules.stdout, /numgen random mod 10000 < 2500 drop/);

      await tb.setLoss("node", 0);
      assert.equal(await _reachable(tb, "lan", NODE), true);
      const none = await tb.run("node", ["nft", "list", "tables"]);
      assert.equal(none.stdout.trim(), "");

      await assert.rejects(tb.setLoss("node", 1.5), RangeError);
      await assert.rejects(tb.setLoss("node", 0.00001), /below the 1\/10000 resolution/);
      await assert.rejects(tb.setLoss("nowhere", 0.5), /no namespace "nowhere"/);
    } finally {
      await tb.destroy();
    }
  },
});

Deno.test({
  name: "netns: destroy removes every namespace after a failing test body, and twice is fine",
  ignore: !CAN,
  ...opts,
  fn: async () => {
    let tb: Testbed | undefined;
    let sleeper: Deno.ChildProcess | undefined;
    const failingTest = async () => {
      tb = await createTestbed(LINE);
      try {
        sleeper = tb.spawn("node", ["sleep", "600"]);
        throw new Error("boom");
      } finally {
        await tb.destroy();
      }
    };
    await assert.rejects(failingTest(), /boom/);
    assert.ok(tb && sleeper);
    await _assertGone(Object.values(tb.ns));
    const status = await sleeper.status;
    assert.equal(status.success, false, "destroy() should have killed the spawned process");
    await tb.destroy();
    assert.throws(() => tb!.spawn("node", ["true"]), /after destroy/);
  },
});

Deno.test({
  name: "netns: a new testbed deletes the namespaces and processes of a crashed run",
  ignore: !CAN,
  ...opts,
  fn: async () => {
    // A separate process builds a testbed, starts a process in it and is killed -9, so
    // nothing of ours runs its cleanup: exactly what a crashed `deno test` leaves.
    const crashing = `
      import { createTestbed } from ${JSON.stringify(new URL("./netns.ts", import.meta.url).href)};
      const tb = await createTestbed({
        namespaces: ["a", "b"],
        links: [{ a: "a", b: "b", aAddr: "10.201.45.1", bAddr: "10.201.45.2", prefix: 24 }],
      });
      tb.spawn("b", ["sleep", "600"]);
      console.log(JSON.stringify(Object.values(tb.ns)));
      setInterval(() => {}, 1000);
    `;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", "--no-config", crashing],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    let leftovers: string[] = [];
    let orphans: number[] = [];
    let tb: Testbed | undefined;
    try {
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let line = "";
      while (!line.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`crashing child exited early: ${line}`);
        line += value;
      }
      reader.releaseLock();
      leftovers = JSON.parse(line);
      // The spawned `ip netns exec` joins the namespace a moment after the child prints.
      const deadline = Date.now() + LISTEN_TIMEOUT_MS;
      while (orphans.length === 0 && Date.now() < deadline) {
        const pids = await runToEnd("ip", ["netns", "pids", leftovers[1]]);
        orphans = pids.stdout.split(/\s+/).filter(Boolean).map(Number);
        if (orphans.length === 0) await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(orphans.length, 1, `expected the sleep in ${leftovers[1]}: ${orphans}`);

      child.kill("SIGKILL");
      await child.status;
      const listed = await _namespaces();
      for (const name of leftovers) assert.ok(listed.includes(name), `${name} should be left`);

      tb = await createTestbed(LINE);
      await _assertGone(leftovers);
      for (const pid of orphans) {
        const state = await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => "");
        // Gone, or a zombie waiting for init to reap it.
        assert.ok(state === "" || / Z /.test(state), `orphan ${pid} still runs: ${state}`);
      }
      // Our own, live testbed is never taken for a leftover by the next one.
      const second = await createTestbed({ namespaces: ["x"], links: [] });
      await second.destroy();
      const listedNow = await _namespaces();
      for (const name of Object.values(tb.ns)) assert.ok(listedNow.includes(name));
    } finally {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already dead.
      }
      await child.status;
      await tb?.destroy();
      for (const name of leftovers) {
        const pids = await runToEnd("ip", ["netns", "pids", name]);
        for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
          await runToEnd("kill", ["-9", pid]);
        }
        await runToEnd("ip", ["netns", "del", name]);
      }
    }
    await _assertGone([...leftovers, ...Object.values(tb?.ns ?? {})]);
  },
});

Deno.test({
  name: "netns: a setup step that fails names the command and leaves no namespace behind",
  ignore: !CAN,
  ...opts,
  fn: async () => {
    const ours = async () =>
      (await _namespaces()).filter((n) => n.startsWith("fl") && n.includes(`p${Deno.pid}-`));
    const before = await ours();
    await assert.rejects(
      createTestbed({ ...LINE, routes: [{ ns: "lan", to: "10.201.99.0/24", via: "10.201.98.1" }] }),
      /`ip -n fl[0-9a-f]{4}p\d+-lan route add 10\.201\.99\.0\/24 via 10\.201\.98\.1` exited/,
    );
    assert.deepEqual(await ours(), before);
    await assert.rejects(
      createTestbed({ namespaces: ["a"], links: [{ ...LINE.links[0], b: "a" }] }),
      /links\[0\]\.a names "lan", not in namespaces/,
    );
  },
});

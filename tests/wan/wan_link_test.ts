/**
 * The link emulator with real packets: two namespaces joined only by the TUN forwarder,
 * TCP between them (tests/wan/probe.ts), and the forwarder's own counters.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { canCreateNamespaces, type Testbed } from "../e2e/netns.ts";
import { createWanPair, WAN_PAIR } from "./wan_link.ts";

const CAN = await canCreateNamespaces();
if (!CAN) console.warn("wan link tests skipped: they need root and a working `ip netns`");
const opts = { sanitizeOps: false, sanitizeResources: false, ignore: !CAN };

const PROBE = join(import.meta.dirname!, "probe.ts");
const PORT = 7700;
/** The probe server is a fresh Deno process: ~200 ms here, slower on a loaded machine. */
const LISTEN_TIMEOUT_MS = 15_000;
/**
 * Scheduling slack on this shared 2-core machine: the processes at both ends and the
 * forwarder may each wait for a CPU. Delays can only add to the link's, never subtract.
 */
const SLACK_MS = 40;

async function serve(tb: Testbed): Promise<void> {
  const child = tb.spawn(WAN_PAIR.server, [
    Deno.execPath(),
    "run",
    "-A",
    PROBE,
    "serve",
    `${PORT}`,
  ]);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const deadline = setTimeout(() => child.kill("SIGKILL"), LISTEN_TIMEOUT_MS);
  try {
    let out = "";
    while (!out.includes("listening")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`probe server exited: ${await new Response(child.stderr).text()}`);
      out += value;
    }
  } finally {
    clearTimeout(deadline);
    reader.releaseLock();
  }
}

async function probe(tb: Testbed, ...args: string[]): Promise<any> {
  const r = await tb.run(WAN_PAIR.client, [Deno.execPath(), "run", "-A", PROBE, ...args]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function hostLinks(): Promise<string> {
  const out = await new Deno.Command("ip", { args: ["-o", "link", "show"], stdout: "piped" })
    .output();
  return new TextDecoder().decode(out.stdout);
}

Deno.test(
  "wan link: a 40 ms RTT profile gives ~40 ms TCP connect and ~80 ms first echoed byte",
  opts,
  async () => {
    const { tb, wan } = await createWanPair({ delayMs: 20 });
    try {
      await serve(tb);
      const r = await probe(tb, "rtt", WAN_PAIR.serverAddr, `${PORT}`, "7");
      const connect = median(r.connectMs);
      const first = median(r.firstByteMs);
      // SYN out and SYN-ACK back: one RTT; then the byte out and back: a second.
      assert.ok(connect >= 40 && connect < 40 + SLACK_MS, `connect median ${connect} ms`);
      assert.ok(first >= 80 && first < 80 + SLACK_MS, `first byte median ${first} ms`);
      const s = await wan.stats();
      assert.ok(s.ab.forwarded > 0 && s.ba.forwarded > 0);
      assert.equal(s.ab.dropped.loss + s.ab.dropped.queue, 0);
      // IPv4 only: no IPv6 chatter reaches a device before its far end is up.
      assert.equal(s.ab.dropped.write + s.ba.dropped.write, 0, JSON.stringify(s));
    } finally {
      await tb.destroy();
    }
  },
);

Deno.test("wan link: a rate profile caps throughput near the rate", opts, async () => {
  const rateMbit = 20;
  const { tb } = await createWanPair({ delayMs: 5, rateMbit });
  try {
    await serve(tb);
    // 2 MiB out and echoed back: each direction carries it once, in parallel.
    const bytes = 2 * 1024 * 1024;
    const { ms } = await probe(tb, "push", WAN_PAIR.serverAddr, `${PORT}`, `${bytes}`);
    const mbit = (bytes * 8) / (ms * 1000);
    // IP and TCP headers take ~4% of a 1500-byte packet, so payload stays below the rate.
    assert.ok(mbit <= rateMbit, `payload ${mbit.toFixed(1)} Mbit/s over a ${rateMbit} Mbit/s link`);
    assert.ok(mbit > rateMbit * 0.6, `payload ${mbit.toFixed(1)} Mbit/s: link underused`);
  } finally {
    await tb.destroy();
  }
});

Deno.test(
  "wan link: setProfile loss drops that share; a partition drops everything until healed",
  opts,
  async () => {
    const { tb, wan } = await createWanPair({ delayMs: 2 });
    try {
      await serve(tb);
      await wan.setProfile({ delayMs: 2, lossPct: 10 }, "ab");
      await probe(tb, "push", WAN_PAIR.serverAddr, `${PORT}`, `${1024 * 1024}`);
      const s = await wan.stats();
      const share = s.ab.dropped.loss / (s.ab.dropped.loss + s.ab.forwarded);
      assert.ok(share > 0.05 && share < 0.15, `a→b lost ${share}`);
      assert.equal(s.ba.dropped.loss, 0, "b→a kept its profile");

      await wan.setProfile({ delayMs: 2 });
      await wan.setPartitioned(true);
      assert.deepEqual(await probe(tb, "connect", WAN_PAIR.serverAddr, `${PORT}`, "1000"), {
        ok: false,
      });
      assert.ok((await wan.stats()).ab.dropped.partition > 0);
      await wan.setPartitioned(false);
      assert.deepEqual(await probe(tb, "connect", WAN_PAIR.serverAddr, `${PORT}`, "5000"), {
        ok: true,
      });
      await assert.rejects(wan.setProfile({ delayMs: -1 }), /delayMs -1/);
    } finally {
      await tb.destroy();
    }
  },
);

Deno.test(
  "wan link: destroy stops the forwarder and leaves no device or namespace",
  opts,
  async () => {
    const { tb, wan } = await createWanPair({ delayMs: 1 });
    const names = Object.values(tb.ns);
    await tb.destroy();
    assert.equal(await _running(wan.forwarderPid), false);
    const links = await hostLinks();
    assert.doesNotMatch(links, /: flw\d+[:@]/, "a TUN device stayed in the host's namespace");
    const listed = new TextDecoder().decode(
      (await new Deno.Command("ip", { args: ["netns", "list"], stdout: "piped" }).output()).stdout,
    );
    for (const n of names) assert.ok(!listed.includes(n), `${n} left behind`);
    await wan.close(); // idempotent
  },
);

Deno.test("wan link: the forwarder exits when its parent is killed -9", opts, async () => {
  const script = `
    import { createWanPair } from ${JSON.stringify(new URL("./wan_link.ts", import.meta.url).href)};
    const { wan } = await createWanPair({ delayMs: 1 });
    console.log(wan.forwarderPid);
    setInterval(() => {}, 1000);`;
  const parent = new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let pid = 0;
  try {
    const reader = parent.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let line = "";
    while (!line.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("parent exited early");
      line += value;
    }
    reader.releaseLock();
    pid = Number(line.trim());
    assert.equal(await _running(pid), true);
  } finally {
    parent.kill("SIGKILL");
    await parent.status;
  }
  const deadline = Date.now() + 5_000;
  while (await _running(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await _running(pid), false, "forwarder outlived its parent");
  // Its namespaces are a crashed run's leftovers; the next testbed removes them.
  const { tb } = await createWanPair({ delayMs: 1 });
  await tb.destroy();
});

async function _running(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2)[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

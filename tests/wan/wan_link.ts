/**
 * An emulated WAN link between two namespaces of a netns.ts testbed: a TUN device in each,
 * joined by the forwarder process (forwarder.ts), which applies a LinkProfile per direction
 * (delay, jitter, loss, rate behind a tail-drop queue). `tc netem` is not available on the
 * machines this runs on; this is what stands in for it.
 *
 *   const tb = await createTestbed({ namespaces: ["user", "node"], links: [] });
 *   const wan = await createWanLink(tb, {
 *     a: "user", b: "node", aAddr: "10.210.0.1", bAddr: "10.210.0.2",
 *     profile: { delayMs: 20, rateMbit: 100, lossPct: 1 },
 *   });
 *   await wan.setProfile({ delayMs: 20, rateMbit: 100, lossPct: 5 }); // both directions
 *   await wan.setPartitioned(true);                                   // drop everything
 *   ...
 *   await tb.destroy(); // stops the forwarder too; the devices vanish with it
 *
 * The forwarder also exits when this process dies (its stdin closes), so a crashed test
 * leaves no device behind, and netns.ts removes a crashed run's namespaces.
 */
import { join } from "node:path";
import { runOk } from "../e2e/harness.ts";
import { createTestbed, type Testbed } from "../e2e/netns.ts";
import type { Command, Direction, Ok, Reply, Stats } from "./forwarder.ts";
import { type LinkProfile, resolveProfile } from "./link_schedule.ts";

export type { LinkProfile } from "./link_schedule.ts";
export type { DirectionStats, Stats } from "./forwarder.ts";

export interface WanLinkSpec {
  /** Short namespace names in the testbed: the two ends. */
  a: string;
  b: string;
  aAddr: string;
  bAddr: string;
  /** Prefix length of the link's subnet (default 24). */
  prefix?: number;
  /** Profile of a → b, and of b → a unless profileBA is given. */
  profile: LinkProfile;
  profileBA?: LinkProfile;
  /** Interface names inside the namespaces (default `w-<peer short name>`). */
  aIf?: string;
  bIf?: string;
}

export interface WanLink {
  /** Interface names inside a's and b's namespaces. */
  aIf: string;
  bIf: string;
  /** The forwarder's process id (tests check it goes away). */
  forwarderPid: number;
  /** Applies from the next packet on; `dir` "ab" is a → b (default both directions). */
  setProfile(profile: LinkProfile, dir?: Direction | "both"): Promise<void>;
  /** true: every packet both ways is dropped, including those on the wire; false: heals. */
  setPartitioned(on: boolean): Promise<void>;
  /** Packets forwarded and dropped (by reason) per direction since the start. */
  stats(): Promise<Stats>;
  /** Stops the forwarder (the devices go with it). Idempotent; tb.destroy() calls it. */
  close(): Promise<void>;
}

const FORWARDER = join(import.meta.dirname!, "forwarder.ts");
/** The forwarder prints `ready` after two ioctls; Deno's start takes ~100-300 ms here. */
const START_TIMEOUT_MS = 15_000;
/** Commands are answered within one ppoll round (≤ 1 ms); a loaded machine may be slower. */
const COMMAND_TIMEOUT_MS = 10_000;
/**
 * The forwarder is the network: when it waits for a CPU, every packet is late and TCP and
 * QUIC measure a slower link. On this 2-core machine shared by ~8 test runs (load 10), at
 * nice 0 one iperf3 run over 40 ms/100 Mbit/s sank to 20 Mbit/s for seconds with no drop
 * in the emulated queue (packets late, not lost). At -10 it runs ahead of the tests' own
 * processes; it only ever uses the CPU its packets need (~35% of a core at 100 Mbit/s
 * each way).
 */
const FORWARDER_NICE = -10;
/** How long close() lets the forwarder exit on stdin EOF before SIGKILL. */
const STOP_GRACE_MS = 2_000;
/** The forwarder's stderr kept for error messages; a failure prints well under 4 KiB. */
const STDERR_LIMIT = 16 * 1024;
/** IFNAMSIZ is 16 bytes including the terminating NUL. */
const IFNAME_MAX = 15;

export async function createWanLink(tb: Testbed, spec: WanLinkSpec): Promise<WanLink> {
  const ab = resolveProfile(spec.profile);
  const ba = resolveProfile(spec.profileBA ?? spec.profile);
  const aIf = spec.aIf ?? `w-${spec.b}`.slice(0, IFNAME_MAX);
  const bIf = spec.bIf ?? `w-${spec.a}`.slice(0, IFNAME_MAX);
  const prefix = spec.prefix ?? 24;
  const nsA = tb.ns[spec.a];
  const nsB = tb.ns[spec.b];
  if (!nsA || !nsB) {
    throw new RangeError(
      `wan link: namespaces "${spec.a}" and "${spec.b}" must both be in the testbed ` +
        `(have ${Object.keys(tb.ns).join(", ")})`,
    );
  }

  const child = new Deno.Command("nice", {
    args: [
      "-n",
      String(FORWARDER_NICE),
      Deno.execPath(),
      "run",
      "--allow-ffi",
      "--allow-read",
      "--no-config",
      FORWARDER,
      JSON.stringify({ ab, ba }),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const fwd = _attach(child);
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= fwd.stop());
  tb.onDestroy(close);

  try {
    const ready = await fwd.first(START_TIMEOUT_MS) as { ready: true; a: string; b: string };
    for (
      const [ns, dev, ifName, addr] of [
        [nsA, ready.a, aIf, spec.aAddr],
        [nsB, ready.b, bIf, spec.bAddr],
      ]
    ) {
      await runOk("ip", ["link", "set", dev, "netns", ns]);
      await runOk("ip", ["-n", ns, "link", "set", dev, "name", ifName]);
      await runOk("ip", ["-n", ns, "addr", "add", `${addr}/${prefix}`, "dev", ifName]);
      // IPv4 only: without this, router solicitations and MLD reports cross the link and
      // show up in its counters (and losses) at random moments.
      await runOk("ip", [
        "netns",
        "exec",
        ns,
        "sysctl",
        "-qw",
        `net.ipv6.conf.${ifName}.disable_ipv6=1`,
      ]);
      await runOk("ip", ["-n", ns, "link", "set", ifName, "up"]);
    }
  } catch (e) {
    await close();
    throw e;
  }

  return {
    aIf,
    bIf,
    forwarderPid: child.pid,
    async setProfile(profile, dir = "both") {
      resolveProfile(profile); // refuse here, with the caller's stack, not in the forwarder
      for (const d of dir === "both" ? ["ab", "ba"] as const : [dir]) {
        await fwd.command({ op: "profile", dir: d, profile });
      }
    },
    async setPartitioned(on) {
      await fwd.command({ op: "partition", on });
    },
    async stats() {
      return (await fwd.command({ op: "stats" })).stats!;
    },
    close,
  };
}

/** The usual shape: two namespaces, `client` and `server`, joined only by a WAN link. */
export const WAN_PAIR = {
  client: "client",
  server: "server",
  clientAddr: "10.210.0.1",
  serverAddr: "10.210.0.2",
} as const;

/**
 * A testbed of WAN_PAIR's two namespaces and the link between them (profile in both
 * directions unless profileBA, server → client, is given). `tb.destroy()` removes it all.
 */
export async function createWanPair(
  profile: LinkProfile,
  profileBA?: LinkProfile,
): Promise<{ tb: Testbed; wan: WanLink }> {
  const tb = await createTestbed({ namespaces: [WAN_PAIR.client, WAN_PAIR.server], links: [] });
  try {
    const wan = await createWanLink(tb, {
      a: WAN_PAIR.client,
      b: WAN_PAIR.server,
      aAddr: WAN_PAIR.clientAddr,
      bAddr: WAN_PAIR.serverAddr,
      profile,
      profileBA,
    });
    return { tb, wan };
  } catch (e) {
    await tb.destroy();
    throw e;
  }
}

type _NoId<C> = C extends unknown ? Omit<C, "id"> : never;

interface _Forwarder {
  /** The first stdout line (the ready line), or the reason there was none. */
  first(timeoutMs: number): Promise<unknown>;
  command(cmd: _NoId<Command>): Promise<Ok>;
  stop(): Promise<void>;
}

function _attach(child: Deno.ChildProcess): _Forwarder {
  const writer = child.stdin.getWriter();
  const pending = new Map<number, (r: Reply) => void>();
  let firstLine: ((v: unknown) => void) | undefined;
  let stderr = "";
  let exited = false;
  let nextId = 1;
  const gone = () => new Error(`wan link: forwarder exited; its stderr:\n${stderr}`);

  const stderrDone = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr = (stderr + chunk).slice(-STDERR_LIMIT);
    }
  })().catch(() => {});
  const readyLine = new Promise<unknown>((resolve) => (firstLine = resolve));
  const stdoutDone = (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (firstLine) {
          firstLine(msg);
          firstLine = undefined;
        } else {
          pending.get(msg.id)?.(msg);
          pending.delete(msg.id);
        }
      }
    }
  })().catch(() => {});
  const status = Promise.all([child.status, stderrDone, stdoutDone]).then(([s]) => {
    exited = true;
    firstLine?.(undefined);
    for (const resolve of pending.values()) resolve({ id: -1, error: gone().message });
    pending.clear();
    return s;
  });

  const withTimeout = <T>(p: Promise<T>, ms: number, what: string): Promise<T> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const t = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`wan link: ${what} took over ${ms} ms`)), ms);
    });
    return Promise.race([p, t]).finally(() => clearTimeout(timer));
  };

  return {
    async first(timeoutMs) {
      const line = await withTimeout(readyLine, timeoutMs, "forwarder start");
      if (line === undefined) throw gone();
      return line;
    },
    async command(cmd) {
      if (exited) throw gone();
      const id = nextId++;
      const reply = new Promise<Reply>((resolve) => pending.set(id, resolve));
      await writer.write(new TextEncoder().encode(JSON.stringify({ ...cmd, id }) + "\n"));
      const r = await withTimeout(reply, COMMAND_TIMEOUT_MS, `command ${cmd.op}`);
      if ("error" in r) throw new Error(`wan link: ${cmd.op} refused: ${r.error}`);
      return r;
    },
    async stop() {
      // EOF on stdin is the forwarder's signal to exit.
      await writer.close().catch(() => {});
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // exited meanwhile
        }
      }, STOP_GRACE_MS);
      await status;
      clearTimeout(timer);
    },
  };
}

/**
 * Multi-host end-to-end tests on one machine: each "host" is a Linux network namespace,
 * joined to its neighbours by veth pairs, with static routes and optional forwarding, so a
 * test can build `lan — node — srv` and send real packets between real processes.
 *
 * Namespaces are named `<prefix>-<short>` where the prefix is `fl`, 4 random hex digits,
 * `p` and the owning process's pid (`fl3a9cp41234-lan`). The pid lets a later run tell the
 * namespaces of a crashed run (owner gone) from those of a run still in progress (owner
 * alive, maybe a parallel `deno test`), so createTestbed deletes only true leftovers.
 * Interface names stay short whatever the prefix: veths are created directly inside their
 * namespaces (never in the host's) and named after the link index and the peer.
 */
import { runOk, runToEnd } from "./harness.ts";

/** One veth pair: namespaces `a` and `b` (short names) with an address on each end. */
export interface Link {
  a: string;
  b: string;
  aAddr: string;
  bAddr: string;
  prefix: number;
}

export interface Testbed {
  /** Full namespace names, keyed by the short names the caller asked for. */
  ns: Record<string, string>;
  /** Runs a command inside a namespace (ip netns exec), to completion. */
  run(
    ns: string,
    cmd: string[],
    opts?: { env?: Record<string, string> },
  ): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Spawns a long-running process inside a namespace (stdout/stderr piped), killed by destroy() if still running. */
  spawn(ns: string, cmd: string[], opts?: { env?: Record<string, string> }): Deno.ChildProcess;
  /** Adds an address to a namespace's loopback-like dummy interface (for "hosts" that are only addresses, e.g. a LAN client's source address). */
  addAddress(ns: string, cidr: string): Promise<void>;
  /** Drops a fraction (0..1) of packets leaving `ns` (nftables `numgen random`), for loss tests; pass 0 to remove. */
  setLoss(ns: string, fraction: number): Promise<void>;
  /** Registers a cleanup destroy() runs first (e.g. a WAN link's forwarder), last added first. */
  onDestroy(cleanup: () => Promise<void>): void;
  /** Runs the onDestroy cleanups, kills spawned processes, deletes every namespace it created. Idempotent. */
  destroy(): Promise<void>;
}

/** Every namespace this fixture makes, in any run; group 1 is the owner's pid. */
const _NAME_PATTERN = /^fl[0-9a-f]{4}p(\d+)-/;
/** Short names end up in namespace and interface names: no slashes, spaces or dots. */
const _SHORT_NAME = /^[a-z0-9][a-z0-9_-]*$/i;
/** IFNAMSIZ is 16 bytes including the terminating NUL. */
const _IFNAME_MAX = 15;
/** The interface addAddress puts addresses on. */
const _DUMMY_IF = "dummy0";
/** setLoss resolution: `numgen random mod 10000` gives 0.01 % steps. */
const _LOSS_STEPS = 10_000;
/** nftables table setLoss owns in each namespace. */
const _LOSS_TABLE = "florete_loss";
/** How long destroy() lets spawned processes exit on SIGTERM before SIGKILL. */
const _STOP_GRACE_MS = 1_000;

/** Deno.test options for a real-process test that needs namespaces: skipped where they cannot
 * be created; the agents it starts outlive single ops, so no op/resource sanitizers. */
export async function namespaceTestOptions() {
  return { sanitizeOps: false, sanitizeResources: false, ignore: !(await canCreateNamespaces()) };
}

/** True when this process may create namespaces (root, `ip netns` works); tests skip with a message otherwise. */
export async function canCreateNamespaces(): Promise<boolean> {
  if (Deno.build.os !== "linux") return false;
  try {
    if (Deno.uid() !== 0) return false;
    const probe = `${_newPrefix()}-probe`;
    if ((await runToEnd("ip", ["netns", "add", probe])).code !== 0) return false;
    const veth = await runToEnd("ip", [
      "-n",
      probe,
      "link",
      "add",
      "p0",
      "type",
      "veth",
      "peer",
      "name",
      "p1",
    ]);
    await runToEnd("ip", ["netns", "del", probe]);
    return veth.code === 0;
  } catch {
    // `ip` missing, or no permission to run subprocesses at all.
    return false;
  }
}

/** Creates namespaces named `<prefix>-<short>` (prefix unique per run, e.g. "fl" + 4 random hex, keep names short: veth names must be ≤15 chars), brings up lo in each, creates one veth pair per link with the given addresses, and adds routes so each namespace can reach every address listed in `routes` via the link given (static routes; enable ip_forward in namespaces that forward). */
export async function createTestbed(spec: {
  namespaces: string[];
  links: Link[];
  routes?: Array<{ ns: string; to: string; via: string }>;
  forwarding?: string[];
}): Promise<Testbed> {
  _checkSpec(spec);
  await _removeLeftovers();

  const prefix = _newPrefix();
  const ns: Record<string, string> = {};
  for (const short of spec.namespaces) ns[short] = `${prefix}-${short}`;
  const created: string[] = [];
  const children = new Set<Deno.ChildProcess>();
  const cleanups: Array<() => Promise<void>> = [];
  let destroying: Promise<void> | undefined;

  const full = (name: string): string => {
    if (Object.hasOwn(ns, name)) return ns[name];
    if (Object.values(ns).includes(name)) return name;
    throw new Error(
      `netns fixture: no namespace "${name}" in this testbed (have ${Object.keys(ns).join(", ")})`,
    );
  };

  const testbed: Testbed = {
    ns,
    run(name, cmd, opts = {}) {
      return runToEnd("ip", ["netns", "exec", full(name), ...cmd], { env: opts.env });
    },
    spawn(name, cmd, opts = {}) {
      if (destroying) throw new Error("netns fixture: spawn after destroy()");
      // `ip netns exec` execs the command in place, so the child's pid is the command's.
      const child = new Deno.Command("ip", {
        args: ["netns", "exec", full(name), ...cmd],
        env: opts.env,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      children.add(child);
      child.status.finally(() => children.delete(child));
      return child;
    },
    async addAddress(name, cidr) {
      const withLength = cidr.includes("/") ? cidr : `${cidr}/32`;
      await runOk("ip", ["-n", full(name), "addr", "add", withLength, "dev", _DUMMY_IF]);
    },
    async setLoss(name, fraction) {
      if (!Number.isFinite(fraction) || fraction < 0 || fraction > 1) {
        throw new RangeError(`netns fixture: loss fraction ${fraction} is outside 0..1`);
      }
      const dropBelow = Math.round(fraction * _LOSS_STEPS);
      if (fraction > 0 && dropBelow === 0) {
        throw new RangeError(
          `netns fixture: loss fraction ${fraction} is below the 1/${_LOSS_STEPS} resolution`,
        );
      }
      await runOk("ip", ["netns", "exec", full(name), "nft", "-f", "-"], {
        stdin: _lossRules(dropBelow),
      });
    },
    onDestroy(cleanup) {
      if (destroying) throw new Error("netns fixture: onDestroy after destroy()");
      cleanups.unshift(cleanup);
    },
    destroy() {
      destroying ??= _destroy(created, children, cleanups);
      return destroying;
    },
  };

  try {
    for (const short of spec.namespaces) {
      await runOk("ip", ["netns", "add", ns[short]]);
      created.push(ns[short]);
      await runOk("ip", ["-n", ns[short], "link", "set", "lo", "up"]);
      await _addDummy(ns[short]);
    }
    for (const [i, link] of spec.links.entries()) {
      const aIf = `v${i}-${link.b}`.slice(0, _IFNAME_MAX);
      const bIf = `v${i}-${link.a}`.slice(0, _IFNAME_MAX);
      // Made inside the namespaces, so nothing is ever left in the host's namespace.
      await runOk("ip", [
        "link",
        "add",
        aIf,
        "netns",
        ns[link.a],
        "type",
        "veth",
        "peer",
        "name",
        bIf,
        "netns",
        ns[link.b],
      ]);
      for (const [side, ifName, addr] of [[link.a, aIf, link.aAddr], [link.b, bIf, link.bAddr]]) {
        await runOk("ip", ["-n", ns[side], "addr", "add", `${addr}/${link.prefix}`, "dev", ifName]);
        await runOk("ip", ["-n", ns[side], "link", "set", ifName, "up"]);
      }
    }
    for (const short of spec.forwarding ?? []) {
      await runOk("ip", ["netns", "exec", ns[short], "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    }
    for (const route of spec.routes ?? []) {
      await runOk("ip", ["-n", ns[route.ns], "route", "add", route.to, "via", route.via]);
    }
  } catch (e) {
    await testbed.destroy();
    throw e;
  }
  return testbed;
}

function _checkSpec(spec: Parameters<typeof createTestbed>[0]): void {
  const known = new Set<string>();
  for (const [i, short] of spec.namespaces.entries()) {
    if (!_SHORT_NAME.test(short)) {
      throw new RangeError(
        `netns fixture: namespaces[${i}] "${short}" must match ${_SHORT_NAME} (it becomes part ` +
          `of namespace and interface names)`,
      );
    }
    if (known.has(short)) throw new RangeError(`netns fixture: namespaces[${i}] "${short}" twice`);
    known.add(short);
  }
  const need = (where: string, short: string) => {
    if (!known.has(short)) {
      throw new RangeError(`netns fixture: ${where} names "${short}", not in namespaces`);
    }
  };
  for (const [i, link] of spec.links.entries()) {
    need(`links[${i}].a`, link.a);
    need(`links[${i}].b`, link.b);
    if (link.a === link.b) {
      throw new RangeError(`netns fixture: links[${i}] joins "${link.a}" to itself`);
    }
    if (!Number.isInteger(link.prefix) || link.prefix < 0 || link.prefix > 32) {
      throw new RangeError(`netns fixture: links[${i}].prefix ${link.prefix} is not 0..32`);
    }
  }
  for (const [i, route] of (spec.routes ?? []).entries()) need(`routes[${i}].ns`, route.ns);
  for (const [i, short] of (spec.forwarding ?? []).entries()) need(`forwarding[${i}]`, short);
}

function _newPrefix(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(2));
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `fl${hex}p${Deno.pid}`;
}

/**
 * The kernel here may lack the `dummy` driver (CONFIG_DUMMY=n); an ifb device, which also
 * drops whatever is sent to it, then serves as well: addresses on any interface are local.
 */
async function _addDummy(name: string): Promise<void> {
  const dummy = await runToEnd("ip", ["-n", name, "link", "add", _DUMMY_IF, "type", "dummy"]);
  if (dummy.code !== 0) {
    await runOk("ip", ["-n", name, "link", "add", _DUMMY_IF, "type", "ifb"]);
  }
  await runOk("ip", ["-n", name, "link", "set", _DUMMY_IF, "up"]);
}

/**
 * One nft transaction: declaring then deleting the table makes the delete safe when there
 * is none, and the whole file applies atomically, so a change of rate never lets a burst
 * through. Loopback is exempt: only packets that leave the namespace are "lost". nft
 * rejects `< 10000` after `mod 10000` (the value is typed 0..9999), so total loss is a
 * plain drop.
 */
function _lossRules(dropBelow: number): string {
  const reset = `table inet ${_LOSS_TABLE}\ndelete table inet ${_LOSS_TABLE}\n`;
  if (dropBelow === 0) return reset;
  const match = dropBelow === _LOSS_STEPS ? "" : `numgen random mod ${_LOSS_STEPS} < ${dropBelow} `;
  return reset +
    `table inet ${_LOSS_TABLE} {\n` +
    `  chain out {\n` +
    `    type filter hook postrouting priority 0; policy accept;\n` +
    `    oifname != "lo" ${match}drop\n` +
    `  }\n` +
    `}\n`;
}

async function _destroy(
  created: string[],
  children: Set<Deno.ChildProcess>,
  cleanups: Array<() => Promise<void>>,
): Promise<void> {
  const failures: string[] = [];
  for (const cleanup of cleanups) {
    // One failing cleanup must not keep the namespaces alive.
    await cleanup().catch((e) => failures.push(`cleanup: ${e instanceof Error ? e.message : e}`));
  }
  const running = [...children];
  for (const child of running) _signal(child.pid, "SIGTERM");
  const exited = Promise.allSettled(running.map((c) => c.status));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), _STOP_GRACE_MS);
  });
  if ((await Promise.race([exited, timedOut])) === "timeout") {
    for (const child of running) _signal(child.pid, "SIGKILL");
    await exited;
  }
  clearTimeout(timer);

  for (const name of created) {
    const error = await _deleteNamespace(name);
    if (error) failures.push(error);
  }
  if (failures.length > 0) {
    throw new Error(`netns fixture: destroy failed: ${failures.join("; ")}`);
  }
}

/**
 * Kills whatever still runs inside (grandchildren, or a crashed run's orphans) first:
 * `ip netns del` only unmounts the name, and a process inside keeps the namespace and its
 * veths alive, invisible to `ip netns list`.
 */
async function _deleteNamespace(name: string): Promise<string | undefined> {
  const pids = await runToEnd("ip", ["netns", "pids", name]);
  for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) _signal(Number(pid), "SIGKILL");
  const del = await runToEnd("ip", ["netns", "del", name]);
  if (del.code === 0 || !(await _listNamespaces()).includes(name)) return undefined;
  return `${name}: ${del.stderr.trim()}`;
}

/** Deletes namespaces of earlier runs whose owning process is gone. */
async function _removeLeftovers(): Promise<void> {
  for (const name of await _listNamespaces()) {
    const owner = _NAME_PATTERN.exec(name);
    if (owner === null || await _isAlive(Number(owner[1]))) continue;
    // A parallel run may be removing the same leftover; whoever loses just finds it gone.
    await _deleteNamespace(name);
  }
}

async function _listNamespaces(): Promise<string[]> {
  const out = await runOk("ip", ["netns", "list"]);
  // Lines read `name` or `name (id: 3)`.
  return out.split("\n").map((line) => line.split(" ")[0]).filter(Boolean);
}

/** A zombie (exited, not yet reaped) counts as gone. */
async function _isAlive(pid: number): Promise<boolean> {
  if (pid === Deno.pid) return true;
  let stat: string;
  try {
    stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  } catch {
    return false;
  }
  // `pid (comm) state ...`; comm may itself contain ") ".
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}

function _signal(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch {
    // Already exited.
  }
}

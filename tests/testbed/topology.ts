/**
 * The pilot's network in namespaces (tests/e2e/netns.ts): two sites, each a router (`sa`,
 * `sb`) with its nodes on their own links, joined through a WAN router `w`; the users'
 * namespace `u` hangs off the WAN too (laptops at home); the operator `ops` and the LAN
 * with the gateway and its devices `lan` sit on site A. No namespace has a default route:
 * only 10.0.0.0/8 is routed, so nothing leaves the machine.
 *
 *   n1 n2 ─ sa ─┐            ┌─ sb ─ n3 n4
 *   ops lan ─┘  └──── w ─────┘
 *                     └─ u (users)
 *
 * With a WAN profile (`40ms/100mbit/0%`), each site's link to the WAN router is an
 * emulated link (tests/wan: TUN devices and a forwarder applying delay, rate and loss), so a
 * user reaches a node over one emulated link and site A reaches site B over two. Without
 * one (`veth`), the links are plain veths and loss comes from nftables.
 *
 * Each node runs its own sshd (key auth, pinned host key) on port 22 of its address,
 * reached from `ops`: enroll and deploy go over real SSH, and what they start runs in the
 * node's namespace.
 */
import { join } from "node:path";
import { createTestbed, type Link, type Testbed } from "../e2e/netns.ts";
import { type SshServer, startSshd } from "../e2e/sshd.ts";
import { parseLink } from "../bench/bench_options.ts";
import { createWanLink, type LinkProfile, type WanLink } from "../wan/wan_link.ts";

export type Site = "a" | "b";

export interface NodeSpec {
  name: string;
  site: Site;
  /** Namespace short name (same as name). */
  ns: string;
  addr: string;
}

export interface Topology {
  tb: Testbed;
  nodes: NodeSpec[];
  /** Combined ssh_config for florctl (FLORCTL_SSH_CONFIG), one Host per node. */
  sshConfig: string;
  sshds: SshServer[];
  /** The gateway's LAN address (flor-gw listens here; devices are in the same namespace). */
  lanAddr: string;
  lanCidr: string;
  /** Short names of the site routers and the WAN router. */
  routers: { a: string; b: string; wan: string };
  /** Packet loss on the WAN (0..1) on top of its profile; 0 restores the profile. */
  setWanLoss(fraction: number): Promise<void>;
  destroy(): Promise<void>;
}

/** Where the QUIC endpoints listen; each node is its own host, so all use one port. */
export const NODE_QUIC_PORT = 7443;
/** The node agents' metrics address (enroll --metrics), inside each node's namespace. */
export const NODE_METRICS = "127.0.0.1:9464";
const SITE_NET: Record<Site, number> = { a: 1, b: 2 };

/** The first half of the nodes (rounded up) on site A, the rest on site B. */
export function nodeSpecs(count: number): NodeSpec[] {
  const inA = Math.ceil(count / 2);
  return Array.from({ length: count }, (_, i) => {
    const site: Site = i < inA ? "a" : "b";
    const name = `n${i + 1}`;
    return { name, site, ns: name, addr: `10.${SITE_NET[site]}.${i + 1}.2` };
  });
}

/** "veth" (no emulation) or a profile as the bench writes it: RTTms/RATEmbit/LOSS%. */
export function wanProfile(spec: string): LinkProfile | undefined {
  if (spec === "veth") return undefined;
  const link = parseLink(spec);
  if (!link.profile) {
    throw new RangeError(`testbed: --wan ${spec}: write veth or RTTms/RATEmbit/LOSS%`);
  }
  return link.profile;
}

export async function buildTopology(
  nodeCount: number,
  tmp: string,
  wan: string,
): Promise<Topology> {
  const nodes = nodeSpecs(nodeCount);
  const profile = wanProfile(wan);
  const siteLinks: Link[] = [
    { a: "sa", b: "w", aAddr: "10.99.1.1", bAddr: "10.99.1.2", prefix: 24 },
    { a: "sb", b: "w", aAddr: "10.99.2.1", bAddr: "10.99.2.2", prefix: 24 },
  ];
  const links: Link[] = [
    ...(profile ? [] : siteLinks),
    { a: "u", b: "w", aAddr: "10.3.0.2", bAddr: "10.3.0.1", prefix: 24 },
    { a: "ops", b: "sa", aAddr: "10.1.200.2", bAddr: "10.1.200.1", prefix: 24 },
    { a: "lan", b: "sa", aAddr: "10.1.250.2", bAddr: "10.1.250.1", prefix: 24 },
  ];
  const routes = [
    { ns: "sa", to: "10.0.0.0/8", via: "10.99.1.2" },
    { ns: "sb", to: "10.0.0.0/8", via: "10.99.2.2" },
    { ns: "w", to: "10.1.0.0/16", via: "10.99.1.1" },
    { ns: "w", to: "10.2.0.0/16", via: "10.99.2.1" },
    { ns: "u", to: "10.0.0.0/8", via: "10.3.0.1" },
    { ns: "ops", to: "10.0.0.0/8", via: "10.1.200.1" },
    { ns: "lan", to: "10.0.0.0/8", via: "10.1.250.1" },
  ];
  for (const [i, n] of nodes.entries()) {
    const router = n.site === "a" ? "sa" : "sb";
    const gw = `10.${SITE_NET[n.site]}.${i + 1}.1`;
    links.push({ a: n.ns, b: router, aAddr: n.addr, bAddr: gw, prefix: 24 });
    routes.push({ ns: n.ns, to: "10.0.0.0/8", via: gw });
  }
  const namespaces = ["w", "sa", "sb", "u", "ops", "lan", ...nodes.map((n) => n.ns)];
  // Routes over the emulated links are added once those links exist.
  const tb = await createTestbed({
    namespaces,
    links,
    routes: profile
      ? routes.filter((r) => !siteLinks.some((l) => l.a === r.ns || l.b === r.ns))
      : routes,
    forwarding: ["w", "sa", "sb"],
  });
  const sshds: SshServer[] = [];
  const wanLinks: WanLink[] = [];
  const destroy = async () => {
    await Promise.allSettled(sshds.map((s) => s.stop()));
    await tb.destroy();
  };
  try {
    if (profile) {
      for (const l of siteLinks) {
        wanLinks.push(await createWanLink(tb, { ...l, profile }));
      }
      for (const r of routes.filter((r) => siteLinks.some((l) => l.a === r.ns || l.b === r.ns))) {
        const out = await tb.run(r.ns, ["ip", "route", "add", r.to, "via", r.via]);
        if (out.code !== 0) throw new Error(`testbed: route in ${r.ns}: ${out.stderr}`);
      }
    }
    await _reachable(tb, nodes);
    // One at a time: each start probes over ssh, and the machine is shared.
    for (const n of nodes) {
      sshds.push(
        await startSshd({
          address: n.addr,
          serverWrap: ["ip", "netns", "exec", tb.ns[n.ns]],
          clientWrap: ["ip", "netns", "exec", tb.ns.ops],
        }),
      );
    }
    // One file for florctl with a Host per node, named as cluster.yaml's `ssh:` says.
    const sshConfig = join(tmp, "ssh_config");
    const configs = await Promise.all(
      sshds.map(async (s, i) =>
        (await Deno.readTextFile(s.config)).replace(`Host ${s.host}\n`, `Host ${nodes[i].name}\n`)
      ),
    );
    await Deno.writeTextFile(sshConfig, configs.join("\n"));
    return {
      tb,
      nodes,
      sshConfig,
      sshds,
      lanAddr: "10.1.250.2",
      lanCidr: "10.1.250.0/24",
      routers: { a: "sa", b: "sb", wan: "w" },
      async setWanLoss(fraction) {
        if (!profile) return tb.setLoss("w", fraction);
        const lossPct = fraction > 0 ? fraction * 100 : profile.lossPct ?? 0;
        for (const l of wanLinks) await l.setProfile({ ...profile, lossPct });
      },
      destroy,
    };
  } catch (e) {
    await destroy();
    throw e;
  }
}

/** The operator reaches every node before sshd's 10 s start probe runs: on a loaded machine
 * a fresh emulated link has been seen to take longer than that to pass its first packets. */
const REACH_TIMEOUT_S = 30;

async function _reachable(tb: Testbed, nodes: NodeSpec[]): Promise<void> {
  for (const n of nodes) {
    const deadline = Date.now() + REACH_TIMEOUT_S * 1000;
    for (;;) {
      // Nothing listens on port 9 yet: a reset ("refused") means the packets got there.
      const r = await tb.run("ops", [
        "timeout",
        "2",
        "bash",
        "-c",
        `echo > /dev/tcp/${n.addr}/9`,
      ]);
      if (r.code === 0 || /refused/i.test(r.stderr)) break;
      if (Date.now() > deadline) {
        throw new Error(
          `testbed: ${n.name} (${n.addr}) unreachable from the operator after ` +
            `${REACH_TIMEOUT_S} s (TCP to port 9 neither answered nor refused)`,
        );
      }
    }
  }
}

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
 * Each node runs its own sshd (key auth, pinned host key) on port 22 of its address,
 * reached from `ops`: enroll and deploy go over real SSH, and what they start runs in the
 * node's namespace.
 */
import { join } from "node:path";
import { createTestbed, type Link, type Testbed } from "../e2e/netns.ts";
import { type SshServer, startSshd } from "../e2e/sshd.ts";

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

export async function buildTopology(nodeCount: number, tmp: string): Promise<Topology> {
  const nodes = nodeSpecs(nodeCount);
  const links: Link[] = [
    { a: "sa", b: "w", aAddr: "10.99.1.1", bAddr: "10.99.1.2", prefix: 24 },
    { a: "sb", b: "w", aAddr: "10.99.2.1", bAddr: "10.99.2.2", prefix: 24 },
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
  const tb = await createTestbed({
    namespaces: ["w", "sa", "sb", "u", "ops", "lan", ...nodes.map((n) => n.ns)],
    links,
    routes,
    forwarding: ["w", "sa", "sb"],
  });
  const sshds: SshServer[] = [];
  const destroy = async () => {
    await Promise.allSettled(sshds.map((s) => s.stop()));
    await tb.destroy();
  };
  try {
    // One at a time: each start probes over ssh, and the machine is shared.
    for (const n of nodes) {
      sshds.push(
        await startSshd({
          netns: { server: tb.ns[n.ns], client: tb.ns.ops, address: n.addr },
          alias: n.name,
        }),
      );
    }
    const sshConfig = join(tmp, "ssh_config");
    const configs = await Promise.all(sshds.map((s) => Deno.readTextFile(s.config)));
    await Deno.writeTextFile(sshConfig, configs.join("\n"));
    return {
      tb,
      nodes,
      sshConfig,
      sshds,
      lanAddr: "10.1.250.2",
      lanCidr: "10.1.250.0/24",
      routers: { a: "sa", b: "sb", wan: "w" },
      destroy,
    };
  } catch (e) {
    await destroy();
    throw e;
  }
}

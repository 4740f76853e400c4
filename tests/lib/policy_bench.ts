/**
 * One policy decision on a pilot-sized map (20 users in 4 groups, 20 services with 5 allow
 * entries each): `deno bench --allow-env tests/lib/policy_bench.ts`. Every tunnel asks it on both ends.
 */
import YAML from "yaml";
import { loadCluster } from "../../lib/cluster.ts";
import { authorize } from "../../lib/policy.ts";

const users = Object.fromEntries(
  Array.from({ length: 20 }, (_, i) => [`u${i}`, { groups: [`g${i % 4}`] }]),
);
const services = Object.fromEntries(
  Array.from({ length: 20 }, (_, i) => [`s${i}`, {
    node: "n1",
    target: `127.0.0.1:${9000 + i}`,
    allow: [`user:u${i}`, `group:g${i % 4}`, "service:s0", "gateway:gw", `user:u${(i + 7) % 20}`],
  }]),
);
const cluster = loadCluster(
  YAML.stringify({
    cluster: "acme",
    nodes: { n1: { endpoint: "127.0.0.1:7101" } },
    users,
    services,
    gateways: { gw: {} },
  }),
  "cluster.yaml",
);

Deno.bench("policy: authorize one user for every service (20 decisions)", () => {
  for (let i = 0; i < 20; i++) authorize(cluster, { kind: "user", name: "u3" }, `s${i}`, 9000 + i);
});

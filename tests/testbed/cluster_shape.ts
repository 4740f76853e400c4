/**
 * The pilot cluster's shape as cluster.yaml will hold it: which services run where, who
 * may use them, which users are in which group. Pure, so the shape a run uses is a unit
 * test, and an operator can read here what `--nodes 4 --users 12 --services 16` means.
 */
import type { NodeSpec } from "./topology.ts";

export type ServiceKind = "web" | "echo" | "ssh" | "lan";

export interface ServiceSpec {
  name: string;
  node: string;
  kind: ServiceKind;
  /** The port clients ask for (the target's). */
  port: number;
  /** host:port the node connects to. */
  target: string;
  allow: string[];
}

export interface UserSpec {
  name: string;
  group: "devs" | "ops";
  /** SOCKS5 and metrics ports on 127.0.0.1 in the users' namespace. */
  socks: number;
  metrics: number;
}

/** Service kinds in rotation, one round per node count: HTTP downloads and short requests,
 * echo targets for the idle connections, the node's sshd as a real SSH target (so three
 * services per node already have every kind). */
const KINDS: ServiceKind[] = ["web", "echo", "ssh", "web"];
const WEB_PORT_BASE = 8000;
const ECHO_PORT_BASE = 9000;
/** The LAN-only service: HTTP on the LAN host, published through the first node. */
export const LAN_SERVICE = "lanweb";
export const LAN_PORT = 8080;
export const GATEWAY = "office";
export const LAN_CLIENT = "printer";
/** Every node also serves HTTP here, published by no service until a fault's deploy adds
 * one (a new service needs a target of its own: florctl refuses two on one port). */
export const SPARE_WEB_PORT = 8999;
const USER_SOCKS_BASE = 1080;
const USER_METRICS_BASE = 9500;

/** `sshPorts`: where each node's sshd listens (the ssh services' targets), default 22. */
export function serviceSpecs(
  nodes: NodeSpec[],
  count: number,
  lanAddr: string,
  sshPorts: Record<string, number> = {},
): ServiceSpec[] {
  const out: ServiceSpec[] = [];
  for (let i = 0; i < count; i++) {
    const node = nodes[i % nodes.length];
    const kind = KINDS[Math.floor(i / nodes.length) % KINDS.length];
    const name = `${kind}${i + 1}`;
    if (kind === "ssh") {
      const port = sshPorts[node.name] ?? 22;
      out.push({
        name,
        node: node.name,
        kind,
        port,
        target: `${node.addr}:${port}`,
        allow: ["group:ops"],
      });
    } else {
      const port = (kind === "web" ? WEB_PORT_BASE : ECHO_PORT_BASE) + i + 1;
      out.push({
        name,
        node: node.name,
        kind,
        port,
        target: `127.0.0.1:${port}`,
        allow: ["group:devs", "group:ops"],
      });
    }
  }
  out.push({
    name: LAN_SERVICE,
    node: nodes[0].name,
    kind: "lan",
    port: LAN_PORT,
    target: `${lanAddr}:${LAN_PORT}`,
    allow: ["group:devs", `gateway:${GATEWAY}`],
  });
  return out;
}

export function userSpecs(count: number): UserSpec[] {
  return Array.from({ length: count }, (_, i) => ({
    name: `u${i + 1}`,
    group: i % 2 === 0 ? "devs" : "ops",
    socks: USER_SOCKS_BASE + i,
    metrics: USER_METRICS_BASE + i,
  }));
}

/** The services a user's group may use (the policy the traffic follows). */
export function allowedFor(user: UserSpec, services: ServiceSpec[]): ServiceSpec[] {
  return services.filter((s) => s.allow.includes(`group:${user.group}`));
}

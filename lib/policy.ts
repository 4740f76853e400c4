/**
 * Who may open a tunnel to which service: pure decisions over the cluster map and a
 * principal taken from a verified certificate. Both ends of a tunnel ask the same question;
 * the target node's answer is the one that counts.
 */

import { isValidName, type Principal, principalString } from "./identity.ts";
import { type AllowEntry, type Cluster, hasPrincipal, servicePort } from "./cluster.ts";
import type { HostPort } from "./host_port.ts";
import { Reply, type ReplyCode } from "./socks5.ts";
import { TunnelStatus } from "./tunnel_header.ts";

export type Denial = "unknown_service" | "not_allowed" | "wrong_port";

/** What each denial is answered with: by the node on the tunnel stream (`status`) and by the
 * client's agent to its SOCKS client (`reply`). The one table both sides use, so the early
 * answer and the node's authoritative one say the same thing. */
export const DENIALS = {
  unknown_service: { status: TunnelStatus.UNKNOWN_SERVICE, reply: Reply.HOST_UNREACHABLE },
  not_allowed: { status: TunnelStatus.NOT_ALLOWED, reply: Reply.NOT_ALLOWED },
  wrong_port: { status: TunnelStatus.WRONG_PORT, reply: Reply.NOT_ALLOWED },
} as const satisfies Record<Denial, { status: TunnelStatus; reply: ReplyCode }>;

export type Decision =
  | { allow: true; service: string; node: string; target: HostPort }
  | { allow: false; reason: Denial; message: string };

/** The domain that names services: `<service>.flor` or `<service>.<cluster>.flor`. */
const _DOMAIN = "flor";

/**
 * `web.flor` or `web.<cluster>.flor` (case-insensitive, optional trailing dot) → "web";
 * anything else (raw IPs, other domains, other cluster's name) → undefined. The service
 * need not exist (authorize answers unknown_service), but its label must be a valid name.
 */
export function serviceFromHost(
  cluster: Pick<Cluster, "cluster">,
  host: string,
): string | undefined {
  const name = host.toLowerCase().replace(/\.$/, "");
  const labels = name.split(".");
  if (labels.at(-1) !== _DOMAIN) return undefined;
  const qualified = labels.length === 3 && labels[1] === cluster.cluster;
  if (labels.length !== 2 && !qualified) return undefined;
  return isValidName(labels[0]) ? labels[0] : undefined;
}

/**
 * Decides whether `principal` may reach `service` on `port`. The allow list is checked
 * before the port, so a principal that may not use a service learns nothing about it.
 */
export function authorize(
  cluster: Cluster,
  principal: Principal,
  service: string,
  port: number,
): Decision {
  if (!Object.hasOwn(cluster.services, service)) {
    return {
      allow: false,
      reason: "unknown_service",
      message: `service '${service}' is not defined in cluster '${cluster.cluster}'`,
    };
  }
  const svc = cluster.services[service];
  if (!isAllowed(cluster, principal, service)) {
    return {
      allow: false,
      reason: "not_allowed",
      message: `${principalString(principal)} is not in the allow list of service '${service}'` +
        ` (services.${service}.allow in cluster.yaml)`,
    };
  }
  const expected = servicePort(svc);
  if (port !== expected) {
    return {
      allow: false,
      reason: "wrong_port",
      message: `service '${service}' is reached on port ${expected}, not ${port}`,
    };
  }
  return { allow: true, service, node: svc.node, target: svc.target };
}

/**
 * The allow-list rule alone; used when a reload re-checks live tunnels.
 *
 * `user:X` matches that user, `group:G` users whose groups include G, `service:X` and
 * `gateway:X` exactly; nodes are never allowed. A principal missing from the cluster map
 * (a user deleted from cluster.yaml) is refused even if an allow entry still names it.
 */
export function isAllowed(cluster: Cluster, principal: Principal, service: string): boolean {
  const groups = _groupsIfKnown(cluster, principal, service);
  return groups !== undefined &&
    cluster.services[service].allow.some((e) => _admits(e, principal, groups));
}

/**
 * The entries of `service`'s allow list that admit `principal` (`group:devs`); empty when it
 * may not connect. `isAllowed` and `florctl access` both ask `_admits`, the one place the
 * rule is written down.
 */
export function grantingEntries(
  cluster: Cluster,
  principal: Principal,
  service: string,
): AllowEntry[] {
  const groups = _groupsIfKnown(cluster, principal, service);
  if (groups === undefined) return [];
  return cluster.services[service].allow.filter((e) => _admits(e, principal, groups));
}

/** The principal's groups, or undefined when no allow entry can admit it: the service is
 * unknown, the principal is a node, or the map does not define it. */
function _groupsIfKnown(
  cluster: Cluster,
  principal: Principal,
  service: string,
): readonly string[] | undefined {
  if (!Object.hasOwn(cluster.services, service)) return undefined;
  if (principal.kind === "node" || !hasPrincipal(cluster, principal)) return undefined;
  return principal.kind === "user" ? cluster.users[principal.name].groups : [];
}

function _admits(entry: AllowEntry, principal: Principal, groups: readonly string[]): boolean {
  if (entry.kind === "group") return principal.kind === "user" && groups.includes(entry.name);
  return entry.kind === principal.kind && entry.name === principal.name;
}

/** A service name safe as a metric label: the name if the cluster defines it, "unknown"
 * otherwise (names clients make up must not create new series). */
export function serviceLabel(cluster: Cluster, name: string): string {
  return Object.hasOwn(cluster.services, name) ? name : "unknown";
}

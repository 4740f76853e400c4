/**
 * Who can reach what, from the cluster map alone: `florctl access SERVICE` and
 * `florctl access KIND:NAME`. Every answer comes from `grantingEntries` (lib/policy.ts),
 * the rule the agents enforce, so the audit cannot disagree with the mesh.
 * Pure: cluster in, report out.
 */

import { allowEntryString, type Cluster, servicePort } from "./cluster.ts";
import { type Principal, principalString } from "./identity.ts";
import { grantingEntries } from "./policy.ts";

/** A revocation of one of the principal's certificates, as cluster.yaml lists it. */
export interface RevocationNote {
  serial: string;
  date?: string;
  reason?: string;
}

export interface Grantee {
  /** `user:alice` */
  principal: string;
  /** The allow entries that admit it (`group:devs`, `user:alice`). */
  via: string[];
  /** Non-empty when certificates of this principal were revoked: nodes refuse those. */
  revoked: RevocationNote[];
  /** A gateway: its LAN clients whose list names the service (flor-gw checks that too). */
  lan_clients?: string[];
}

export interface ServiceAccess {
  service: string;
  node: string;
  /** What clients ask for: `web.flor:8080`. */
  address: string;
  /** Each allow entry and whom it admits today (empty: it matches nobody). */
  rules: { entry: string; principals: string[] }[];
  principals: Grantee[];
}

export interface PrincipalAccess {
  principal: string;
  groups: string[];
  revoked: RevocationNote[];
  services: {
    service: string;
    node: string;
    address: string;
    via: string[];
    lan_clients?: string[];
  }[];
  /** Why the list is empty when the reason is not the allow lists. */
  note?: string;
}

/** Every principal that may open a tunnel to `service` (which must exist). */
export function serviceAccess(cluster: Cluster, service: string): ServiceAccess {
  const svc = cluster.services[service];
  const principals: Grantee[] = [];
  for (const p of _allPrincipals(cluster)) {
    const via = grantingEntries(cluster, p, service).map(allowEntryString);
    if (via.length === 0) continue;
    const id = principalString(p);
    const g: Grantee = { principal: id, via, revoked: _revocations(cluster, id) };
    if (p.kind === "gateway") g.lan_clients = _lanClients(cluster, p.name, service);
    principals.push(g);
  }
  const rules = svc.allow.map(allowEntryString).map((entry) => ({
    entry,
    principals: principals.filter((g) => g.via.includes(entry)).map((g) => g.principal),
  }));
  return { service, node: svc.node, address: _address(cluster, service), rules, principals };
}

/** Every service `principal` (which must exist) may open a tunnel to, with the entries
 * that admit it. */
export function principalAccess(cluster: Cluster, principal: Principal): PrincipalAccess {
  const id = principalString(principal);
  const services: PrincipalAccess["services"] = [];
  for (const service of Object.keys(cluster.services).sort()) {
    const via = grantingEntries(cluster, principal, service).map(allowEntryString);
    if (via.length === 0) continue;
    const node = cluster.services[service].node;
    const entry: PrincipalAccess["services"][number] = {
      service,
      node,
      address: _address(cluster, service),
      via,
    };
    if (principal.kind === "gateway") {
      entry.lan_clients = _lanClients(cluster, principal.name, service);
    }
    services.push(entry);
  }
  const out: PrincipalAccess = {
    principal: id,
    groups: principal.kind === "user" ? cluster.users[principal.name].groups : [],
    revoked: _revocations(cluster, id),
    services,
  };
  if (principal.kind === "node") {
    out.note = "nodes are never admitted by allow lists; a workload on a node connects as its " +
      "service identity (service:NAME)";
  }
  return out;
}

/** Users, services and gateways in name order (nodes are never principals of a tunnel). */
function _allPrincipals(cluster: Cluster): Principal[] {
  const of = (kind: "user" | "service" | "gateway", section: Record<string, unknown>) =>
    Object.keys(section).sort().map((name) => ({ kind, name }));
  return [
    ...of("user", cluster.users),
    ...of("service", cluster.services),
    ...of("gateway", cluster.gateways),
  ];
}

function _lanClients(cluster: Cluster, gateway: string, service: string): string[] {
  return Object.entries(cluster.gateways[gateway].clients)
    .filter(([, c]) => c.services.includes(service)).map(([name]) => name).sort();
}

function _revocations(cluster: Cluster, id: string): RevocationNote[] {
  return cluster.revoked.filter((r) => principalString(r.principal) === id).map((r) => {
    const note: RevocationNote = { serial: r.serial };
    if (r.date !== undefined) note.date = r.date;
    if (r.reason !== undefined) note.reason = r.reason;
    return note;
  });
}

function _address(cluster: Cluster, service: string): string {
  return `${service}.flor:${servicePort(cluster.services[service])}`;
}

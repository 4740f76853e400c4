/**
 * `florctl access SERVICE | KIND:NAME [--json]`: who may reach a service and through which
 * allow entry, or what a principal may reach; from cluster.yaml alone (lib/access.ts).
 */
import { type Cluster, hasPrincipal } from "../../lib/cluster.ts";
import { closestMatch } from "../../lib/config_problems.ts";
import { parsePrincipal, type PrincipalKind } from "../../lib/identity.ts";
import {
  type Grantee,
  type PrincipalAccess,
  principalAccess,
  type RevocationNote,
  type ServiceAccess,
  serviceAccess,
} from "../../lib/access.ts";
import { openClusterDir } from "../support/cluster_dir.ts";
import { CtlError } from "../support/ctl_error.ts";

export async function access(what: string, o: { dir: string; json?: boolean }) {
  const { cluster } = await openClusterDir(o.dir);
  const report = accessReport(cluster, what);
  console.log(
    o.json
      ? JSON.stringify(report, null, 2)
      : "rules" in report
      ? formatServiceAccess(report)
      : formatPrincipalAccess(report),
  );
}

/** The report for a service name or a `kind:name` principal; CtlError saying what to type. */
export function accessReport(cluster: Cluster, what: string): ServiceAccess | PrincipalAccess {
  if (what.includes(":")) {
    if (what.startsWith("group:")) {
      throw new CtlError(
        `'${what}' is a group, not a principal: ask for one of its users (user:NAME), or ` +
          "for a service to see whom each group entry admits",
      );
    }
    let principal;
    try {
      principal = parsePrincipal(what);
    } catch (e) {
      throw new CtlError((e as Error).message);
    }
    if (!hasPrincipal(cluster, principal)) {
      const names = Object.keys(_section(cluster, principal.kind));
      const close = closestMatch(principal.name, names);
      throw new CtlError(
        `${what} is not defined in cluster.yaml, so every node refuses it` +
          (close === undefined ? "" : ` (did you mean '${principal.kind}:${close}'?)`),
      );
    }
    return principalAccess(cluster, principal);
  }
  if (Object.hasOwn(cluster.services, what)) return serviceAccess(cluster, what);
  const close = closestMatch(what, Object.keys(cluster.services));
  throw new CtlError(
    `service '${what}' is not defined in cluster.yaml` +
      (close === undefined ? "" : ` (did you mean '${close}'?)`) +
      "; name a service, or a principal as user:NAME, service:NAME or gateway:NAME",
  );
}

export function formatServiceAccess(a: ServiceAccess): string {
  const byId = new Map(a.principals.map((g) => [g.principal, g]));
  const width = Math.max(0, ...a.rules.map((r) => r.entry.length));
  const lines = [`service ${a.service} (${a.address} on node ${a.node})`];
  for (const r of a.rules) {
    const who = r.principals.length === 0
      ? "nobody"
      : r.principals.map((p) => p + _marks(byId.get(p)!)).join(", ");
    lines.push(`  ${r.entry.padEnd(width)} → ${who}`);
  }
  if (a.rules.length === 0) lines.push("  (empty allow list)");
  const n = a.principals.length;
  lines.push(`${n} principal${n === 1 ? "" : "s"} may connect`);
  return lines.join("\n");
}

export function formatPrincipalAccess(a: PrincipalAccess): string {
  const groups = a.groups.length ? ` (groups: ${a.groups.join(", ")})` : "";
  const lines = [`${a.principal}${groups}${_revokedMark(a.revoked)}`];
  const nameWidth = Math.max(0, ...a.services.map((s) => s.service.length));
  const addrWidth = Math.max(0, ...a.services.map((s) => `${s.address} on ${s.node}`.length));
  for (const s of a.services) {
    const where = `${s.address} on ${s.node}`.padEnd(addrWidth);
    lines.push(
      `  ${s.service.padEnd(nameWidth)}  ${where}  via ${s.via.join(", ")}` + _lan(s.lan_clients),
    );
  }
  if (a.note !== undefined) lines.push(`  ${a.note}`);
  const n = a.services.length;
  lines.push(`${n} service${n === 1 ? "" : "s"} reachable`);
  return lines.join("\n");
}

function _marks(g: Grantee): string {
  return _lan(g.lan_clients) + _revokedMark(g.revoked);
}

/** ` (LAN clients: printer, scanner)` for a gateway; "" otherwise. */
function _lan(clients: string[] | undefined): string {
  if (clients === undefined) return "";
  return ` (LAN clients: ${clients.length ? clients.join(", ") : "none"})`;
}

/** ` [revoked 2026-11-25: laptop lost]`, or "" when nothing was revoked. */
function _revokedMark(revoked: RevocationNote[]): string {
  if (revoked.length === 0) return "";
  const last = revoked.at(-1)!;
  const detail = [last.date, last.reason].filter((x) => x !== undefined).join(": ");
  const count = revoked.length > 1 ? ` ${revoked.length} certificates` : "";
  return ` [revoked${count}${detail ? ` ${detail}` : ""}]`;
}

function _section(cluster: Cluster, kind: PrincipalKind): Record<string, unknown> {
  return {
    node: cluster.nodes,
    user: cluster.users,
    service: cluster.services,
    gateway: cluster.gateways,
  }[kind];
}

/**
 * `florctl doctor`'s checks of the operator's side, pure: cluster.yaml's problems, the
 * expiry of the certificates in pki/ (and the CA), and principals still configured whose
 * current certificate is revoked.
 */
import { type Cluster, entryOf, revokedSerials } from "../../lib/cluster.ts";
import { type ConfigProblem, formatProblem } from "../../lib/config_problems.ts";
import { type Principal, type PrincipalKind, principalString } from "../../lib/identity.ts";
import { normalizeSerial } from "../../lib/pki.ts";
import { type DoctorCheck, okCheck } from "./doctor_report.ts";

/** Certificates that expire within this window are flagged, matching `rotate --within`. */
export const EXPIRY_WARN_DAYS = 14;

const DAY_MS = 86_400_000;

/** One ok line, or one line per problem located as FILE:LINE:COLUMN. */
export function clusterYamlChecks(file: string, problems: ConfigProblem[]): DoctorCheck[] {
  if (!problems.length) return [okCheck("cluster_yaml", file, "valid")];
  return problems.map((p) => ({
    check: "cluster_yaml",
    subject: `${p.file}:${p.line}:${p.column}`,
    verdict: p.severity === "error" ? "fail" : "warn",
    detail: formatProblem(p).slice(`${p.file}:${p.line}:${p.column}: `.length),
    fix: `edit ${p.file} line ${p.line}, then run \`florctl check\``,
  }));
}

export interface CertificateInfo {
  /** "ca", or the principal whose current certificate it is. */
  principal: Principal | "ca";
  notAfter: Date;
  /** For a service: the node that hosts it (its certificate travels in that node's bundle). */
  hostNode?: string;
}

function _subject(c: CertificateInfo): string {
  return c.principal === "ca" ? "ca" : principalString(c.principal);
}

/** How a renewed certificate reaches the machine that uses it. */
export function renewFix(c: CertificateInfo, windowDays = EXPIRY_WARN_DAYS): string {
  const rotate = `\`florctl rotate --within ${windowDays}d\``;
  if (c.principal === "ca") {
    return "CA rotation is not automated in this release: plan a new CA and re-enroll every " +
      "machine before it expires";
  }
  const { kind, name } = c.principal;
  switch (kind) {
    case "node":
      return `${rotate}, then \`florctl deploy --node ${name}\``;
    case "service":
      return c.hostNode
        ? `${rotate}, then \`florctl deploy --node ${c.hostNode}\``
        : `${rotate}, then \`florctl deploy\``;
    case "user":
      return `${rotate}, then \`florctl enroll user ${name} --out ${name}.flor\` and give ` +
        `${name} the file`;
    case "gateway":
      return `${rotate}, then install the new pki/gateway/${name}.crt and .key on the gateway`;
  }
}

/** Expired → fail, expiring within the window → warn, the rest summed up in one ok line. */
export function certificateExpiryChecks(
  certs: CertificateInfo[],
  now: Date,
  windowDays = EXPIRY_WARN_DAYS,
): DoctorCheck[] {
  const out: DoctorCheck[] = [];
  const fine: CertificateInfo[] = [];
  const day = (d: Date) => d.toISOString().slice(0, 10);
  for (const c of certs) {
    const left = c.notAfter.getTime() - now.getTime();
    if (left <= 0) {
      out.push({
        check: "certificate_expiry",
        subject: _subject(c),
        verdict: "fail",
        detail: `expired on ${day(c.notAfter)}: peers refuse it`,
        fix: renewFix(c, windowDays),
      });
    } else if (left <= windowDays * DAY_MS) {
      out.push({
        check: "certificate_expiry",
        subject: _subject(c),
        verdict: "warn",
        detail: `expires on ${day(c.notAfter)}, in ${Math.ceil(left / DAY_MS)} day(s)`,
        fix: renewFix(c, windowDays),
      });
    } else {
      fine.push(c);
    }
  }
  if (fine.length) {
    const next = fine.reduce((a, b) => (a.notAfter <= b.notAfter ? a : b));
    out.unshift(
      okCheck(
        "certificate_expiry",
        "pki",
        `${fine.length} certificate(s) valid for more than ${windowDays} days (the next to ` +
          `expire: ${_subject(next)} on ${day(next.notAfter)})`,
      ),
    );
  }
  return out;
}

function _reissueFix(c: Cluster, p: Principal): string {
  switch (p.kind) {
    case "node":
      return `\`florctl enroll node ${p.name}\` (or \`florctl bundle node ${p.name} --out DIR\`)`;
    case "user":
      return `\`florctl enroll user ${p.name} --out ${p.name}.flor\``;
    case "service":
      return `\`florctl deploy --node ${entryOf(c.services, p.name)?.node ?? "NODE"}\``;
    case "gateway":
      return `a new bundle for gateway ${p.name}`;
  }
}

/** Principals in cluster.yaml (and allow entries naming them) whose current certificate in
 * pki/ is revoked: after `florctl revoke` the operator either removes them or re-issues. */
export function revokedStillConfiguredChecks(
  cluster: Cluster,
  currentSerials: ReadonlyMap<string, string>,
): DoctorCheck[] {
  const revoked = revokedSerials(cluster);
  const reasons = new Map(cluster.revoked.map((r) => [r.serial, r.reason]));
  const isRevoked = (p: Principal) => {
    const serial = currentSerials.get(principalString(p));
    return serial !== undefined && revoked.has(normalizeSerial(serial)) ? serial : undefined;
  };
  const out: DoctorCheck[] = [];
  const sections: Array<[PrincipalKind, Record<string, unknown>]> = [
    ["node", cluster.nodes],
    ["user", cluster.users],
    ["service", cluster.services],
    ["gateway", cluster.gateways],
  ];
  for (const [kind, section] of sections) {
    for (const name of Object.keys(section)) {
      const p = { kind, name };
      const serial = isRevoked(p);
      if (serial === undefined) continue;
      const reason = reasons.get(normalizeSerial(serial));
      out.push({
        check: "revoked_still_configured",
        subject: principalString(p),
        verdict: "warn",
        detail: `is still in cluster.yaml (${kind}s.${name}) but its certificate (serial ` +
          `${serial}) is revoked${reason ? ` (${reason})` : ""}`,
        fix: `remove ${kind}s.${name} from cluster.yaml, or issue a new certificate: ` +
          _reissueFix(cluster, p),
      });
    }
  }
  for (const [svc, s] of Object.entries(cluster.services)) {
    for (const entry of s.allow) {
      if (entry.kind === "group") continue;
      const p: Principal = { kind: entry.kind, name: entry.name };
      const serial = isRevoked(p);
      if (serial === undefined) continue;
      out.push({
        check: "revoked_still_configured",
        subject: `services.${svc}.allow`,
        verdict: "warn",
        detail: `names ${principalString(p)}, whose certificate (serial ${serial}) is revoked`,
        fix:
          `remove ${principalString(p)} from services.${svc}.allow, or issue a new certificate: ` +
          _reissueFix(cluster, p),
      });
    }
  }
  if (!out.length) {
    out.push(
      okCheck(
        "revoked_still_configured",
        "cluster.yaml",
        "no principal in it holds a revoked certificate",
      ),
    );
  }
  return out;
}

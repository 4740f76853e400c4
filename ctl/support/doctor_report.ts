/**
 * What `florctl doctor` reports: checks, each with a verdict (ok, warn, fail), a subject, a
 * detail and a fix (a command or an action), and how they print. The checks themselves are
 * pure functions in cluster_checks.ts (cluster.yaml, pki/) and node_checks.ts (the nodes'
 * answers); ctl/commands/doctor.ts gathers their inputs.
 */

export type Verdict = "ok" | "warn" | "fail";

export type CheckName =
  | "cluster_yaml"
  | "certificate_expiry"
  | "revoked_still_configured"
  | "node_reachable"
  | "clock_skew"
  | "version_skew"
  | "config_hash"
  | "udp_buffer";

export interface DoctorCheck {
  check: CheckName;
  subject: string;
  verdict: Verdict;
  detail: string;
  /** A command or an action; "" when the verdict is ok. */
  fix: string;
}

export interface DoctorReport {
  checks: DoctorCheck[];
  /** No check failed (warnings allowed). */
  ok: boolean;
}

/** A passing check: no fix needed. */
export const okCheck = (check: CheckName, subject: string, detail: string): DoctorCheck => ({
  check,
  subject,
  verdict: "ok",
  detail,
  fix: "",
});

/** `OK    check  subject: detail`, an indented fix for the others, then a count. */
export function formatChecks(checks: DoctorCheck[]): string {
  const w = Math.max(0, ...checks.map((c) => c.check.length));
  const lines: string[] = [];
  for (const c of checks) {
    lines.push(
      `${c.verdict.toUpperCase().padEnd(4)}  ${c.check.padEnd(w)}  ${c.subject}: ${c.detail}`,
    );
    if (c.verdict !== "ok" && c.fix) lines.push(`      fix: ${c.fix}`);
  }
  const n = (v: Verdict) => checks.filter((c) => c.verdict === v).length;
  lines.push(`${n("ok")} ok, ${n("warn")} warning(s), ${n("fail")} failure(s)`);
  return lines.join("\n");
}

export function doctorReport(checks: DoctorCheck[]): DoctorReport {
  return { checks, ok: checks.every((c) => c.verdict !== "fail") };
}

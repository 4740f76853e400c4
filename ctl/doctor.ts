/**
 * `florctl doctor [--json]`: what is wrong with the cluster and what to do about it. Each
 * check gives a verdict (ok, warn, fail), a detail and a fix (a command or an action):
 *
 *   cluster_yaml              cluster.yaml is valid (FILE:LINE for each problem)
 *   certificate_expiry        certificates in pki/ and the CA: expired, or within 14 days
 *   revoked_still_configured  a principal (or allow entry) whose current certificate is revoked
 *   node_reachable            per node; an unreachable one is diagnosed (wrong identity,
 *                             operator refused, agent down vs UDP blocked, over ssh if it can)
 *   clock_skew                per reachable node, corrected by half the RTT
 *   version_skew              nodes and florctl on different releases
 *   config_hash               per reachable node: does it run what cluster.yaml says
 *   udp_buffer                per reachable node: QUIC receive buffer below its target, or
 *                             UDP receive-buffer overflows in the last minute
 *
 * The verdicts are pure functions of what the shell (`doctor`) gathered, tested without
 * sockets; exit 1 when any check fails.
 */
import { posix } from "node:path";
import {
  checkCluster,
  type Cluster,
  entryOf,
  hasPrincipal,
  revokedSerials,
} from "../lib/cluster.ts";
import { formatHostPort, parseHostPort } from "../lib/host_port.ts";
import { type ConfigProblem, formatProblem } from "../lib/config_problems.ts";
import { type Principal, type PrincipalKind, principalString } from "../lib/identity.ts";
import { normalizeSerial } from "../lib/pki.ts";
import { type NodePaths, nodePaths } from "../lib/platform.ts";
import { VERSION } from "../lib/version.ts";
import { type ClusterDir, clusterFile, openClusterDir } from "./cluster_dir.ts";
import { expectedConfigHash } from "./bundle.ts";
import { operatorName } from "./operator.ts";
import { currentCertificates, loadCa } from "./pki_store.ts";
import type { Init } from "./remote_node.ts";
import { formatSshTarget, sshContext, sshFailure, sshScript } from "./ssh.ts";
import { type NodeProbe, type ProbeErrorCode, probeNodes } from "./status.ts";

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

/** Certificates that expire within this window are flagged, matching `rotate --within`. */
export const EXPIRY_WARN_DAYS = 14;
/** Auth messages carry a timestamp and certificates validity dates: beyond this a node's
 * clock is wrong enough to matter (and far above what NTP leaves). */
export const CLOCK_SKEW_LIMIT_MS = 30_000;
/** An ssh probe of an unreachable node is best-effort; the report should not wait long. */
export const SSH_PROBE_TIMEOUT_MS = 8_000;

const DAY_MS = 86_400_000;

// ---- pure: verdicts ----

const _ok = (check: CheckName, subject: string, detail: string): DoctorCheck => ({
  check,
  subject,
  verdict: "ok",
  detail,
  fix: "",
});

/** One ok line, or one line per problem located as FILE:LINE:COLUMN. */
export function clusterYamlChecks(file: string, problems: ConfigProblem[]): DoctorCheck[] {
  if (!problems.length) return [_ok("cluster_yaml", file, "valid")];
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
      _ok(
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
      _ok(
        "revoked_still_configured",
        "cluster.yaml",
        "no principal in it holds a revoked certificate",
      ),
    );
  }
  return out;
}

/** What an ssh look at the node's host found (for an unreachable node). */
export type AgentProbe =
  | { kind: "no_ssh"; why: string }
  | { kind: "ssh_failed"; target: string; message: string }
  | { kind: "running"; detail: string }
  | { kind: "down"; detail: string };

export interface ReachInput {
  node: string;
  endpoint: string;
  /** `user:admin`: the identity florctl authenticates as. */
  operator: string;
  error?: { code: ProbeErrorCode | "operator"; message: string };
  agent?: AgentProbe;
}

/** ok, or a diagnosis of why the node did not answer. */
export function reachabilityCheck(r: ReachInput): DoctorCheck {
  const { node, endpoint } = r;
  const base = { check: "node_reachable" as const, subject: node, verdict: "fail" as const };
  if (!r.error) return _ok("node_reachable", node, `answers at ${endpoint} over the mesh`);
  const { code, message } = r.error;
  const port = String(parseHostPort(endpoint).port);
  switch (code) {
    case "handshake":
      return {
        ...base,
        detail: `wrong identity: the agent at ${endpoint} does not hold node:${node}'s ` +
          `certificate from this cluster's CA (${message})`,
        fix: `check nodes.${node}.endpoint in cluster.yaml points at ${node}; if it does, ` +
          `re-enroll it: \`florctl enroll node ${node}\``,
      };
    case "auth_denied":
      return {
        ...base,
        detail: `${node} refused the operator identity ${r.operator} (${message}): its ` +
          `certificate is revoked or unknown in the node's cluster map, or the clocks differ`,
        fix: `push the current cluster map: \`florctl deploy --node ${node}\`; if ${r.operator} ` +
          `was revoked, use another admin (--as NAME); check both clocks (NTP)`,
      };
    case "refused":
      return {
        ...base,
        detail: `${message}: the node's cluster map does not make ${r.operator} an admin`,
        fix: `push the current cluster map: \`florctl deploy --node ${node}\``,
      };
    case "timeout":
      return {
        ...base,
        detail: `${message}: the agent runs but is stuck or overloaded`,
        fix: `look at the agent's log and resources on ${node} (\`flor status\` there), ` +
          `restart it if it stays stuck`,
      };
    case "operator":
      return {
        ...base,
        detail: `cannot ask it: ${message}`,
        fix: "give your user `role: admin` in cluster.yaml, or pass --as NAME",
      };
    case "unreachable":
      return { ...base, ..._unreachable(node, endpoint, port, message, r.agent) };
    default:
      return {
        ...base,
        detail: message,
        fix: `look at the agent's log on ${node}; re-enroll: \`florctl enroll node ${node}\``,
      };
  }
}

function _unreachable(
  node: string,
  endpoint: string,
  port: string,
  message: string,
  agent?: AgentProbe,
): { detail: string; fix: string } {
  const udpFix = `open UDP port ${port} from here to the node (firewall, security group), ` +
    `or correct nodes.${node}.endpoint in cluster.yaml`;
  const startFix = `\`florctl enroll node ${node}\` (installs and starts it), or start ` +
    `the agent on the host`;
  switch (agent?.kind) {
    case "running":
      return {
        detail: `${message}; the agent runs (${agent.detail}) but does not answer on UDP ` +
          `${endpoint}: UDP is blocked (firewall/security group) or the endpoint is wrong`,
        fix: udpFix,
      };
    case "down":
      return { detail: `${message}; agent down: ${agent.detail}`, fix: startFix };
    case "ssh_failed":
      return {
        detail: `${message}; ssh to ${agent.target} failed too (${agent.message}): the host ` +
          `is down or unreachable, or ssh is`,
        fix: `check that the host is up; then ${startFix}, or ${udpFix}`,
      };
    default:
      return {
        detail: `${message}; cannot tell whether the agent is down or UDP is blocked ` +
          `(firewall/security group) or the endpoint is wrong: ${
            agent?.why ?? "no ssh access to the node"
          }`,
        fix: `on the host, check the agent runs; if it does, ${udpFix}; if not, ${startFix}`,
      };
  }
}

/** The node's clock minus ours at the moment it answered, taken as half-way through the
 * round trip (the error is at most rttMs / 2). */
export function clockSkewMs(nodeTimeMs: number, sentAtMs: number, rttMs: number): number {
  return nodeTimeMs - (sentAtMs + rttMs / 2);
}

export function clockSkewCheck(
  node: string,
  nodeTime: string,
  sentAtMs: number,
  rttMs: number,
  limitMs = CLOCK_SKEW_LIMIT_MS,
): DoctorCheck {
  const t = Date.parse(nodeTime);
  if (!Number.isFinite(t)) {
    return {
      check: "clock_skew",
      subject: node,
      verdict: "warn",
      detail: `reported no usable time ('${nodeTime}')`,
      fix: `upgrade the agent on ${node} to florctl's release`,
    };
  }
  const skew = clockSkewMs(t, sentAtMs, rttMs);
  const abs = Math.abs(skew);
  const amount = abs < 1000 ? `${Math.round(abs)} ms` : `${(abs / 1000).toFixed(1)} s`;
  const secs = `${amount} ${skew >= 0 ? "ahead of" : "behind"}`;
  if (Math.abs(skew) > limitMs) {
    return {
      check: "clock_skew",
      subject: node,
      verdict: "fail",
      detail: `its clock is ${secs} this machine's (limit ${limitMs / 1000} s): auth ` +
        `timestamps and certificate dates are checked against it`,
      fix: `synchronize the clocks with NTP on ${node} and here (e.g. \`timedatectl set-ntp ` +
        `true\`, chrony)`,
    };
  }
  return _ok("clock_skew", node, `${secs} this machine's (± ${(rttMs / 2).toFixed(1)} ms)`);
}

/** Every reachable node and florctl itself on one release, or a warning listing them. */
export function versionSkewCheck(
  local: string,
  nodes: Array<{ node: string; version: string }>,
): DoctorCheck {
  const by = new Map<string, string[]>([[local, ["florctl"]]]);
  for (const n of nodes) by.set(n.version, [...(by.get(n.version) ?? []), n.node]);
  if (by.size === 1) {
    return _ok("version_skew", "cluster", `florctl and ${nodes.length} node(s) run ${local}`);
  }
  const behind = nodes.filter((n) => n.version !== local).map((n) => n.node);
  return {
    check: "version_skew",
    subject: "cluster",
    verdict: "warn",
    detail: "different releases: " +
      [...by].map(([v, who]) => `${v} (${who.join(", ")})`).join("; "),
    fix: `install florctl's release ${local} on ${behind.join(", ")}: ` +
      behind.map((n) => `\`florctl enroll node ${n}\``).join(", ") +
      " (or upgrade florctl if it is the older one)",
  };
}

export function configHashCheck(
  node: string,
  reported: string | undefined,
  expected: string,
): DoctorCheck {
  if (reported === expected) {
    return _ok("config_hash", node, `runs config ${expected}, as cluster.yaml says`);
  }
  return {
    check: "config_hash",
    subject: node,
    verdict: "fail",
    detail: `runs config ${reported ?? "?"}, cluster.yaml says ${expected}: it has an older ` +
      `cluster map or flor.yaml`,
    fix: `florctl deploy --node ${node} (a node without ssh: in cluster.yaml gets a new ` +
      `\`florctl bundle node ${node}\` instead)`,
  };
}

/** What a node's status says about its UDP socket (absent from older releases). */
export interface UdpStatus {
  udp_receive_buffer_bytes?: unknown;
  udp_buffer_target_bytes?: unknown;
  udp_receive_errors_last_min?: unknown;
}

/** A buffer below the node's target, or overflows in the last minute, warn with the fix; a
 * node that does not report its buffer (a release before it, or not Linux) gets no line. */
export function udpBufferCheck(node: string, s: UdpStatus): DoctorCheck | undefined {
  const target = typeof s.udp_buffer_target_bytes === "number"
    ? s.udp_buffer_target_bytes
    : undefined;
  if (target === undefined) return undefined;
  const got = typeof s.udp_receive_buffer_bytes === "number"
    ? s.udp_receive_buffer_bytes
    : undefined;
  const sysctl = `sysctl -w net.core.rmem_max=${target} net.core.wmem_max=${target}`;
  const warn = (detail: string, fix: string): DoctorCheck => ({
    check: "udp_buffer",
    subject: node,
    verdict: "warn",
    detail,
    fix,
  });
  if (got === undefined) {
    return warn(
      "the node could not set its QUIC socket's receive buffer (its log says why: " +
        "udp.buffer_unset); fast transfers may lose packets",
      "on Linux, check that flor runs with --allow-ffi (release launchers do); elsewhere " +
        "nothing can be done yet",
    );
  }
  if (got < target) {
    return warn(
      `QUIC receive buffer ${got} bytes, below its target ${target}: packets are dropped ` +
        `while the agent is busy`,
      `on ${node}: \`${sysctl}\` then restart flor (\`florctl enroll node ${node}\` installs ` +
        `this as /etc/sysctl.d/60-florete.conf)`,
    );
  }
  const overflows = typeof s.udp_receive_errors_last_min === "number"
    ? s.udp_receive_errors_last_min
    : 0;
  if (overflows > 0) {
    return warn(
      `${overflows} UDP datagram(s) dropped for a full receive buffer in the last minute ` +
        `(the host's counter: any UDP program on it counts)`,
      `raise transport.udp_buffer_bytes in ${node}'s flor.yaml and net.core.rmem_max to ` +
        `match, or find what keeps the agent busy (flor_event_loop_lag_seconds, CPU)`,
    );
  }
  return _ok(
    "udp_buffer",
    node,
    `QUIC receive buffer ${got} bytes, no overflows in the last minute`,
  );
}

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

// ---- pure: the ssh probe script ----

const _PROBE_TAG = "florete-probe:";

/** Prints `florete-probe: running|down <detail>` on the node's host. */
export function agentProbeScript(init: Init, paths: NodePaths): string {
  const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  if (init === "systemd") {
    return [
      "s=$(systemctl is-active flor.service 2>&1 || true)",
      `case "$s" in active|reloading|activating) echo "${_PROBE_TAG} running systemctl says $s";;`,
      `  *) echo "${_PROBE_TAG} down systemctl says flor.service is $s";; esac`,
      "",
    ].join("\n");
  }
  if (init === "launchd") {
    return [
      "if launchctl print system/dev.florete.flor 2>/dev/null | grep -q 'state = running'; then",
      `  echo "${_PROBE_TAG} running launchd says dev.florete.flor is running"`,
      `else echo "${_PROBE_TAG} down launchd says dev.florete.flor is not running"; fi`,
      "",
    ].join("\n");
  }
  const pidFile = q(paths.pidFile);
  return [
    `pid=$(cat ${pidFile} 2>/dev/null || true)`,
    `if [ -z "$pid" ]; then echo "${_PROBE_TAG} down no pid in ${posix.basename(paths.pidFile)}";`,
    `elif kill -0 "$pid" 2>/dev/null; then echo "${_PROBE_TAG} running pid $pid";`,
    `else echo "${_PROBE_TAG} down no process with pid $pid"; fi`,
    "",
  ].join("\n");
}

export function parseAgentProbe(out: string): AgentProbe | undefined {
  for (const line of out.split("\n")) {
    const m = /^florete-probe: (running|down) (.*)$/.exec(line.trim());
    if (m) return { kind: m[1] as "running" | "down", detail: m[2] };
  }
  return undefined;
}

// ---- the shell ----

async function _probeAgent(
  cd: ClusterDir,
  node: string,
  sshConfig: string | undefined,
): Promise<AgentProbe> {
  const entry = cd.cluster.nodes[node];
  if (!entry.ssh) return { kind: "no_ssh", why: `nodes.${node} has no ssh: in cluster.yaml` };
  if (!entry.install) {
    return {
      kind: "no_ssh",
      why: `${node} was not enrolled with \`florctl enroll node\` (no install: entry), so ` +
        "florctl does not know how its agent is supervised",
    };
  }
  const target = entry.ssh;
  const where = formatSshTarget(target);
  const paths = nodePaths(entry.install.os ?? "linux", entry.install.prefix);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), SSH_PROBE_TIMEOUT_MS);
  });
  try {
    const r = await Promise.race([
      sshScript(sshContext(sshConfig), target, agentProbeScript(entry.install.init, paths)),
      timeout,
    ]);
    if (!r) {
      return {
        kind: "ssh_failed",
        target: where,
        message: `no answer within ${SSH_PROBE_TIMEOUT_MS / 1000} s`,
      };
    }
    const found = r.code === 0 ? parseAgentProbe(r.stdout) : undefined;
    if (found) return found;
    const message = r.code === 0
      ? `the probe printed no verdict: ${(r.stderr || r.stdout).trim() || "nothing"}`
      : sshFailure(target, "the probe", r).message.replace(`${where}: `, "");
    return { kind: "ssh_failed", target: where, message };
  } catch (e) {
    return { kind: "ssh_failed", target: where, message: (e as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

async function _certificateInfos(cd: ClusterDir): Promise<CertificateInfo[]> {
  const revoked = revokedSerials(cd.cluster);
  const out: CertificateInfo[] = [];
  const ca = await loadCa(cd.dir);
  out.push({ principal: "ca", notAfter: ca.cert.notAfter });
  for (const { principal, cert } of await currentCertificates(cd.dir)) {
    // Removed principals do not matter; revoked ones are revoked_still_configured's.
    if (!hasPrincipal(cd.cluster, principal)) continue;
    if (revoked.has(normalizeSerial(cert.serialNumber))) continue;
    out.push({
      principal,
      notAfter: cert.notAfter,
      hostNode: principal.kind === "service"
        ? entryOf(cd.cluster.services, principal.name)?.node
        : undefined,
    });
  }
  return out;
}

async function _nodeChecks(
  cd: ClusterDir,
  o: DoctorOptions,
): Promise<DoctorCheck[]> {
  const nodes = Object.entries(cd.cluster.nodes);
  let operator: string;
  let probes: NodeProbe[];
  try {
    operator = principalString({ kind: "user", name: operatorName(cd.cluster, o.as) });
    probes = await probeNodes(cd, o.as);
  } catch (e) {
    const error = { code: "operator" as const, message: (e as Error).message };
    return nodes.map(([node, n]) =>
      reachabilityCheck({ node, endpoint: formatHostPort(n.endpoint), operator: "?", error })
    );
  }
  const reach = await Promise.all(probes.map(async (p) => {
    const agent = p.error?.code === "unreachable"
      ? await _probeAgent(cd, p.node, o.sshConfig)
      : undefined;
    return reachabilityCheck({
      node: p.node,
      endpoint: p.endpoint,
      operator,
      error: p.error,
      agent,
    });
  }));
  const up = probes.filter((p) => p.status);
  const clocks = up.map((p) =>
    clockSkewCheck(p.node, String(p.status!.time), p.sentAtMs!, p.rttMs!)
  );
  const versions = up.length
    ? [
      versionSkewCheck(
        VERSION,
        up.map((p) => ({ node: p.node, version: String(p.status!.version) })),
      ),
    ]
    : [];
  const hashes = await Promise.all(
    up.map(async (p) =>
      configHashCheck(p.node, p.status!.config_hash, await expectedConfigHash(cd, p.node))
    ),
  );
  const udp = up.flatMap((p) => udpBufferCheck(p.node, p.status as UdpStatus) ?? []);
  return [...reach, ...clocks, ...versions, ...hashes, ...udp];
}

export interface DoctorOptions {
  dir: string;
  json?: boolean;
  as?: string;
  sshConfig?: string;
}

export async function doctorChecks(o: DoctorOptions): Promise<DoctorCheck[]> {
  const file = clusterFile(o.dir);
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    return [{
      check: "cluster_yaml",
      subject: file,
      verdict: "fail",
      detail: `cannot read it: ${(e as Error).message}`,
      fix: `pass the cluster directory with --dir, or create one with \`florctl init\``,
    }];
  }
  const checks = clusterYamlChecks(file, checkCluster(text, file).problems);
  // Everything else needs a cluster map florctl accepts.
  if (checks.some((c) => c.verdict === "fail")) return checks;
  const cd = await openClusterDir(o.dir);
  const now = new Date();
  try {
    checks.push(...certificateExpiryChecks(await _certificateInfos(cd), now));
  } catch (e) {
    checks.push({
      check: "certificate_expiry",
      subject: "pki",
      verdict: "fail",
      detail: (e as Error).message,
      fix: "restore pki/ next to cluster.yaml from your backup",
    });
  }
  const nodeChecks = await _nodeChecks(cd, o);
  // After the probes: they may have issued the operator a fresh certificate.
  const serials = new Map<string, string>();
  for (const { principal, cert } of await currentCertificates(cd.dir)) {
    serials.set(principalString(principal), normalizeSerial(cert.serialNumber));
  }
  checks.push(...revokedStillConfiguredChecks(cd.cluster, serials), ...nodeChecks);
  return checks;
}

export async function doctor(o: DoctorOptions): Promise<number> {
  const report = doctorReport(await doctorChecks(o));
  console.log(o.json ? JSON.stringify(report, null, 2) : formatChecks(report.checks));
  return report.ok ? 0 : 1;
}

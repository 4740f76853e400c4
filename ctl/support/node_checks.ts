/**
 * `florctl doctor`'s checks of the nodes, pure functions of what the probes found: reachable
 * or a diagnosis of why not (wrong identity, operator refused, agent down vs UDP blocked),
 * clock skew corrected by half the RTT, release skew, config drift and the UDP buffer.
 */
import { parseHostPort } from "../../lib/host_port.ts";
import type { AgentProbe } from "./agent_probe.ts";
import { type DoctorCheck, okCheck } from "./doctor_report.ts";
import type { ProbeErrorCode } from "./node_probe.ts";

/** Auth messages carry a timestamp and certificates validity dates: beyond this a node's
 * clock is wrong enough to matter (and far above what NTP leaves). */
export const CLOCK_SKEW_LIMIT_MS = 30_000;

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
  if (!r.error) return okCheck("node_reachable", node, `answers at ${endpoint} over the mesh`);
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
  return okCheck("clock_skew", node, `${secs} this machine's (± ${(rttMs / 2).toFixed(1)} ms)`);
}

/** Every reachable node and florctl itself on one release, or a warning listing them. */
export function versionSkewCheck(
  local: string,
  nodes: Array<{ node: string; version: string }>,
): DoctorCheck {
  const by = new Map<string, string[]>([[local, ["florctl"]]]);
  for (const n of nodes) by.set(n.version, [...(by.get(n.version) ?? []), n.node]);
  if (by.size === 1) {
    return okCheck("version_skew", "cluster", `florctl and ${nodes.length} node(s) run ${local}`);
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
    return okCheck("config_hash", node, `runs config ${expected}, as cluster.yaml says`);
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
  return okCheck(
    "udp_buffer",
    node,
    `QUIC receive buffer ${got} bytes, no overflows in the last minute`,
  );
}

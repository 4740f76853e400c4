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
 * The verdicts are pure functions (ctl/support/cluster_checks.ts, node_checks.ts) of what
 * this shell gathers, tested without sockets; exit 1 when any check fails.
 */
import { checkCluster, entryOf, hasPrincipal, revokedSerials } from "../../lib/cluster.ts";
import { formatHostPort } from "../../lib/host_port.ts";
import { principalString } from "../../lib/identity.ts";
import { normalizeSerial } from "../../lib/pki.ts";
import { VERSION } from "../../lib/version.ts";
import { probeAgent } from "../support/agent_probe.ts";
import { expectedConfigHash } from "../support/bundle_files.ts";
import {
  certificateExpiryChecks,
  type CertificateInfo,
  clusterYamlChecks,
  revokedStillConfiguredChecks,
} from "../support/cluster_checks.ts";
import { type ClusterDir, clusterFile, openClusterDir } from "../support/cluster_dir.ts";
import { CtlError } from "../support/ctl_error.ts";
import { type DoctorCheck, doctorReport, formatChecks } from "../support/doctor_report.ts";
import {
  clockSkewCheck,
  configHashCheck,
  reachabilityCheck,
  udpBufferCheck,
  type UdpStatus,
  versionSkewCheck,
} from "../support/node_checks.ts";
import { type NodeProbe, probeNodes } from "../support/node_probe.ts";
import { operatorName } from "../support/operator.ts";
import { currentCertificates, loadCa } from "../support/pki_store.ts";

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
      ? await probeAgent(cd, p.node, o.sshConfig)
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

export async function doctor(o: DoctorOptions): Promise<void> {
  const report = doctorReport(await doctorChecks(o));
  console.log(o.json ? JSON.stringify(report, null, 2) : formatChecks(report.checks));
  if (!report.ok) {
    const failed = report.checks.filter((c) => c.verdict === "fail").length;
    throw new CtlError(`${failed} failing check(s)`, { reported: true });
  }
}

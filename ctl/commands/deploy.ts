/**
 * `florctl deploy [--node N]... [--dry-run]`: pushes the cluster map and any changed
 * certificates to every enrolled node, reloads each (a restart only when the node's own
 * certificate changed, since its QUIC listener serves it), and verifies over the mesh that
 * each runs the new config. A node that fails is named; the others are still updated.
 */
import { formatProblem } from "../../lib/config_problems.ts";
import { checkClusterAndTests } from "../../lib/policy_tests.ts";
import { installedChoice, makeBundle } from "../support/bundle_files.ts";
import { type ClusterDir, clusterFile, openClusterDir } from "../support/cluster_dir.ts";
import { CtlError } from "../support/ctl_error.ts";
import {
  type Action,
  changedFiles,
  controlScript,
  detectTarget,
  hashScript,
  type Init,
  installedFiles,
  keptPaths,
  parseHashes,
  writeScript,
} from "../support/remote_node.ts";
import { remoteLogTail, verifyNode } from "../support/node_verify.ts";
import { type SshContext, sshContext, sshScriptOk, type SshTarget } from "../support/ssh.ts";

/** A reload is quick; a node that has not taken the new map by then has a problem. */
const DEPLOY_VERIFY_TIMEOUT_MS = 15_000;

export interface DeployOptions {
  dir: string;
  node: string[];
  dryRun?: boolean;
  sshConfig?: string;
  as?: string;
}

type Outcome = "updated" | "unchanged" | "skipped" | "failed";

export interface NodeResult {
  node: string;
  outcome: Outcome;
  detail: string;
}

export async function deploy(o: DeployOptions): Promise<void> {
  await _refuseInvalid(o.dir);
  const cd = await openClusterDir(o.dir);
  const all = Object.keys(cd.cluster.nodes);
  for (const n of o.node) if (!all.includes(n)) throw new CtlError(`no node ${n} in ${cd.file}`);
  const ssh = sshContext(o.sshConfig);
  const results: NodeResult[] = [];
  for (const name of o.node.length ? o.node : all) {
    results.push(await _deployNode(cd, name, ssh, o));
  }
  const summary = deploySummary(results, o.dryRun ?? false);
  console.log(summary);
  if (results.some((r) => r.outcome === "failed")) {
    throw new CtlError(summary, { reported: true });
  }
}

/** `deploy: 1 updated, 2 unchanged, 0 skipped, 1 failed (n3)`. */
export function deploySummary(results: NodeResult[], dryRun: boolean): string {
  const count = (k: Outcome) => results.filter((r) => r.outcome === k).length;
  const failed = results.filter((r) => r.outcome === "failed").map((r) => r.node);
  return `deploy${dryRun ? " (dry run)" : ""}: ${count("updated")} ${
    dryRun ? "to update" : "updated"
  }, ${count("unchanged")} unchanged, ${count("skipped")} skipped, ${failed.length} failed` +
    (failed.length ? ` (${failed.join(", ")})` : "");
}

/** Check first: nothing is pushed from a cluster.yaml that `florctl check` rejects. */
async function _refuseInvalid(dir: string): Promise<void> {
  const text = await Deno.readTextFile(clusterFile(dir)).catch(() => "");
  const problems = checkClusterAndTests(text, clusterFile(dir)).problems.filter((p) =>
    p.severity === "error"
  );
  if (problems.length) {
    throw new CtlError(
      `deploy refused, nothing was pushed: ${clusterFile(dir)} has problems:\n` +
        problems.map(formatProblem).join("\n"),
    );
  }
}

/** One node: skipped when florctl cannot reach or has not installed it; a failure is its
 * result, not the end of the deploy. */
async function _deployNode(
  cd: ClusterDir,
  name: string,
  ssh: SshContext,
  o: DeployOptions,
): Promise<NodeResult> {
  const entry = cd.cluster.nodes[name];
  const say = (s: string) => console.log(`${name}: ${s}`);
  if (!entry.ssh || !entry.install) {
    const why = !entry.ssh ? "no ssh target" : "not enrolled (run florctl enroll node)";
    say(`skipped: ${why}`);
    return { node: name, outcome: "skipped", detail: why };
  }
  try {
    const target = entry.ssh;
    return await _pushToNode(cd, name, { ssh, target, install: entry.install }, o, say);
  } catch (e) {
    const msg = (e as Error).message;
    say(`FAILED: ${msg}`);
    return { node: name, outcome: "failed", detail: msg };
  }
}

interface Remote {
  ssh: SshContext;
  target: SshTarget;
  install: { prefix: string; init: Init };
}

/** Pushes what changed, reloads (or restarts), and waits until the node runs the new config. */
async function _pushToNode(
  cd: ClusterDir,
  name: string,
  r: Remote,
  o: DeployOptions,
  say: (s: string) => void,
): Promise<NodeResult> {
  const { ssh, target } = r;
  const platform = await detectTarget(ssh, target);
  const bundle = await makeBundle(cd, "node", name, installedChoice(cd, name));
  const { paths, files } = installedFiles(
    platform.os,
    r.install.prefix,
    r.install.init,
    bundle.files,
  );
  const installed = await sshScriptOk(
    ssh,
    target,
    "reading installed files",
    hashScript(files.map((f) => f.path)),
  );
  const changed = await changedFiles(files, parseHashes(installed));
  const outcome = changed.length ? "updated" : "unchanged";
  if (o.dryRun) {
    say(changed.length ? `would update ${changed.map((f) => f.path).join(", ")}` : "up to date");
    return { node: name, outcome, detail: "dry run" };
  }
  if (changed.length) {
    say(`writing ${changed.map((f) => f.path).join(", ")}`);
    await sshScriptOk(
      ssh,
      target,
      "writing the bundle",
      writeScript(changed, paths.config, keptPaths(bundle.files)),
    );
    // The node's QUIC listener serves its own certificate: a new one needs a restart.
    const ownCert = `/certs/node-${name}.crt`;
    const action: Action = changed.some((f) => f.path.endsWith(ownCert) || f.path === paths.unit)
      ? "restart"
      : "reload";
    await sshScriptOk(ssh, target, action, controlScript(r.install.init, paths, action));
    say(action === "restart" ? "restarted (its own certificate changed)" : "reloaded");
  }
  try {
    await verifyNode(cd, name, bundle.configHash, o.as, DEPLOY_VERIFY_TIMEOUT_MS);
  } catch (e) {
    const tail = await remoteLogTail(ssh, target, r.install.init, paths);
    throw new CtlError(`${(e as Error).message}\n${tail}`);
  }
  say(`runs config ${bundle.configHash}`);
  return { node: name, outcome, detail: "" };
}

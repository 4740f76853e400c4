/**
 * `florctl deploy [--node N]... [--dry-run]`: pushes the cluster map and any changed
 * certificates to every enrolled node, reloads each (a restart only when the node's own
 * certificate changed, since its QUIC listener serves it), and verifies over the mesh that
 * each runs the new config. A node that fails is named; the others are still updated.
 */
import { sha256Hex } from "../lib/sha256.ts";
import { formatProblem } from "../lib/config_problems.ts";
import { checkClusterAndTests } from "../lib/policy_tests.ts";
import { installedChoice, makeBundle } from "./bundle.ts";
import { clusterFile, CtlError, openClusterDir } from "./cluster_dir.ts";
import { remoteLogTail, verifyNode } from "./enroll.ts";
import {
  type Action,
  controlScript,
  detectTarget,
  hashScript,
  installedFiles,
  parseHashes,
  writeScript,
} from "./remote_node.ts";
import { sshContext, sshScriptOk } from "./ssh.ts";

/** A reload is quick; a node that has not taken the new map by then has a problem. */
const DEPLOY_VERIFY_TIMEOUT_MS = 15_000;

export interface DeployOptions {
  dir: string;
  node: string[];
  dryRun?: boolean;
  sshConfig?: string;
  as?: string;
}

export async function deploy(o: DeployOptions): Promise<number> {
  // Check first: nothing is pushed from a cluster.yaml that `florctl check` rejects.
  const text = await Deno.readTextFile(clusterFile(o.dir)).catch(() => "");
  const problems = checkClusterAndTests(text, clusterFile(o.dir)).problems.filter((p) =>
    p.severity === "error"
  );
  if (problems.length) {
    throw new CtlError(
      `deploy refused, nothing was pushed: ${clusterFile(o.dir)} has problems:\n` +
        problems.map(formatProblem).join("\n"),
    );
  }
  const cd = await openClusterDir(o.dir);
  const all = Object.keys(cd.cluster.nodes);
  for (const n of o.node) if (!all.includes(n)) throw new CtlError(`no node ${n} in ${cd.file}`);
  const names = o.node.length ? o.node : all;
  const ssh = sshContext(o.sshConfig);
  const results: Array<
    { node: string; outcome: "updated" | "unchanged" | "skipped" | "failed"; detail: string }
  > = [];

  for (const name of names) {
    const entry = cd.cluster.nodes[name];
    const say = (s: string) => console.log(`${name}: ${s}`);
    if (!entry.ssh || !entry.install) {
      const why = !entry.ssh ? "no ssh target" : "not enrolled (run florctl enroll node)";
      say(`skipped: ${why}`);
      results.push({ node: name, outcome: "skipped", detail: why });
      continue;
    }
    try {
      const target = entry.ssh;
      const platform = await detectTarget(ssh, target);
      const bundle = await makeBundle(cd, "node", name, installedChoice(cd, name));
      const { paths, files } = installedFiles(
        platform.os,
        entry.install.prefix,
        entry.install.init,
        bundle.files,
      );
      const remote = parseHashes(
        await sshScriptOk(
          ssh,
          target,
          "reading installed files",
          hashScript(files.map((f) => f.path)),
        ),
      );
      const changed = [];
      for (const f of files) if (remote.get(f.path) !== await sha256Hex(f.data)) changed.push(f);
      if (o.dryRun) {
        say(
          changed.length ? `would update ${changed.map((f) => f.path).join(", ")}` : "up to date",
        );
        results.push({
          node: name,
          outcome: changed.length ? "updated" : "unchanged",
          detail: "dry run",
        });
        continue;
      }
      if (changed.length) {
        say(`writing ${changed.map((f) => f.path).join(", ")}`);
        const keep = bundle.files.filter((f) => /^(certs|keys|secrets)\//.test(f.path)).map((f) =>
          f.path
        );
        await sshScriptOk(
          ssh,
          target,
          "writing the bundle",
          writeScript(changed, paths.config, keep),
        );
        const ownCert = `/certs/node-${name}.crt`;
        const action: Action = changed.some((f) =>
            f.path.endsWith(ownCert) || f.path === paths.unit
          )
          ? "restart"
          : "reload";
        await sshScriptOk(ssh, target, action, controlScript(entry.install.init, paths, action));
        say(action === "restart" ? "restarted (its own certificate changed)" : "reloaded");
      }
      try {
        await verifyNode(cd, name, bundle.configHash, o.as, DEPLOY_VERIFY_TIMEOUT_MS);
      } catch (e) {
        const tail = await remoteLogTail(ssh, target, entry.install.init, paths);
        throw new CtlError(`${(e as Error).message}\n${tail}`);
      }
      say(`runs config ${bundle.configHash}`);
      results.push({ node: name, outcome: changed.length ? "updated" : "unchanged", detail: "" });
    } catch (e) {
      const msg = (e as Error).message;
      say(`FAILED: ${msg}`);
      results.push({ node: name, outcome: "failed", detail: msg });
    }
  }

  const count = (k: string) => results.filter((r) => r.outcome === k).length;
  const failed = results.filter((r) => r.outcome === "failed");
  console.log(
    `deploy${o.dryRun ? " (dry run)" : ""}: ${count("updated")} ${
      o.dryRun ? "to update" : "updated"
    }, ${count("unchanged")} unchanged, ${count("skipped")} skipped, ${failed.length} failed` +
      (failed.length ? ` (${failed.map((r) => r.node).join(", ")})` : ""),
  );
  return failed.length ? 1 : 0;
}

/**
 * After files reach a node (enroll, deploy): does it answer over the mesh as itself with the
 * config hash its new files imply, and if not, the end of its log to say why.
 */
import { formatHostPort } from "../../lib/host_port.ts";
import type { NodePaths } from "../../lib/platform.ts";
import type { ClusterDir } from "./cluster_dir.ts";
import { CtlError } from "./ctl_error.ts";
import { operator } from "./operator.ts";
import type { Init } from "./remote_node.ts";
import { shellQuote, type SshContext, sshScript, type SshTarget } from "./ssh.ts";

/** How long a node may take to come up and answer with the new config. */
export const VERIFY_TIMEOUT_MS = 15_000;

/** The agent's last log lines on the node, to explain why it did not come up. */
export async function remoteLogTail(
  ssh: SshContext,
  target: SshTarget,
  init: Init,
  paths: NodePaths,
): Promise<string> {
  const cmd = init === "systemd"
    ? "journalctl -u flor.service -n 15 --no-pager 2>&1"
    : `tail -n 15 ${shellQuote(paths.log)} 2>&1`;
  const r = await sshScript(ssh, target, cmd + "\n").catch(() => undefined);
  return r ? `last lines of the agent's log on the node:\n${r.stdout.trimEnd()}` : "";
}

/** Polls the node's status over the mesh until it reports `configHash`. */
export async function verifyNode(
  cd: ClusterDir,
  name: string,
  configHash: string,
  as?: string,
  timeoutMs = VERIFY_TIMEOUT_MS,
) {
  const op = await operator(cd, as);
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    try {
      const s = await op.query(name);
      if (s.node !== name) {
        throw new CtlError(
          `the agent at ${formatHostPort(cd.cluster.nodes[name].endpoint)} says it is ${s.node}`,
        );
      }
      if (s.config_hash === configHash) return s;
      last = `it runs config ${s.config_hash}, expected ${configHash}`;
    } catch (e) {
      if (e instanceof CtlError) throw e;
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new CtlError(`node ${name} did not come up with the new config: ${last}`);
}

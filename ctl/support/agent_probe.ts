/**
 * A look at an unreachable node's host over ssh: is the agent running under its supervisor
 * (then UDP is blocked) or not (then it is down)? The script and the parsing of its output
 * are pure; `probeAgent` runs it, best-effort and bounded by SSH_PROBE_TIMEOUT_MS.
 */
import { posix } from "node:path";
import { type NodePaths, nodePaths } from "../../lib/platform.ts";
import type { ClusterDir } from "./cluster_dir.ts";
import type { Init } from "./remote_node.ts";
import { formatSshTarget, sshContext, sshFailure, sshScript } from "./ssh.ts";

/** An ssh probe of an unreachable node is best-effort; the report should not wait long. */
export const SSH_PROBE_TIMEOUT_MS = 8_000;

/** What an ssh look at the node's host found (for an unreachable node). */
export type AgentProbe =
  | { kind: "no_ssh"; why: string }
  | { kind: "ssh_failed"; target: string; message: string }
  | { kind: "running"; detail: string }
  | { kind: "down"; detail: string };

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

/** What the node's host says about its agent; never throws. */
export async function probeAgent(
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

/**
 * A reload, as decisions over the runtime being replaced: what a new bundle may change
 * without a restart (checkReload), and the order one reload runs in (serializedReload):
 * load, check, swap and notify (config_source.ts), then say what happened. No file access
 * here: the agent hands in how to load.
 */
import type { EventLog } from "../lib/log.ts";
import type { ConfigHolder } from "./config_source.ts";
import type { Runtime } from "./runtime.ts";

/** What a reload reports besides its events (agent_metrics.ts, /readyz). */
export interface ReloadHealth {
  /** The last reload failed: the agent serves an older configuration than the operator
   * deployed, so /readyz says not ready until a reload succeeds. */
  reloadFailed: boolean;
  failures: { inc(): void };
}

/**
 * The runtime to swap in for `loaded`, checked against the one running; throws if the bundle
 * is now for another node or cluster (nothing swapped, the old configuration serves). A map
 * revoking one of our own identities is applied, that identity dropped (fail closed).
 */
export function checkReload(current: Runtime, loaded: Runtime) {
  const nextCfg = loaded.loaded.config;
  const cfg = current.loaded.config;
  if (nextCfg.cluster !== cfg.cluster || nextCfg.node !== cfg.node) {
    throw new Error(
      `the bundle is now for ${nextCfg.node ?? "a client"} in ` +
        `'${nextCfg.cluster}': restart flor to change what it runs as`,
    );
  }
  const needsRestart: string[] = [];
  if (loaded.node && loaded.node.certPem !== current.node?.certPem) {
    needsRestart.push("node certificate");
  }
  if (JSON.stringify(nextCfg.listen) !== JSON.stringify(cfg.listen)) needsRestart.push("listen");
  // The node identity is kept even when the new map revokes it: the QUIC server is bound to
  // it until a restart, and a restart then refuses to start (agent.ts assertServable).
  const next: Runtime = { ...loaded, node: current.node };
  return { next, needsRestart };
}

/**
 * One reload at a time, in the order asked: a SIGHUP and a map refresh may overlap, and the
 * later must not be overtaken by the earlier's older files. Returns the error if the old
 * configuration keeps serving (a load, check or subscriber failed), else undefined.
 */
export function serializedReload(
  holder: ConfigHolder<Runtime>,
  /** Reads the agent's bundle again (flor.yaml, the cluster map, the identities). */
  load: (current: Runtime) => Promise<Runtime>,
  log: EventLog,
  health: ReloadHealth,
): () => Promise<Error | undefined> {
  let last: Promise<unknown> = Promise.resolve();
  return function reload() {
    const done = last.then(async () => {
      const current = holder.current();
      try {
        const { next, needsRestart } = checkReload(current, await load(current));
        holder.replace(next);
        log.info("config.reloaded", {
          config_hash: next.configHash,
          revoked: next.view.revoked.size,
          applied_by: holder.subscribers(),
        });
        logRevokedIdentities(log, next);
        if (needsRestart.length) log.warn("config.restart_needed", { changed: needsRestart });
        health.reloadFailed = false;
        return undefined;
      } catch (e) {
        health.reloadFailed = true;
        health.failures.inc();
        log.error("config.reload_failed", {
          file: current.loaded.file,
          error: (e as Error).message,
        });
        return e as Error;
      }
    });
    last = done;
    return done;
  };
}

export function logRevokedIdentities(log: EventLog, rt: Runtime) {
  for (const r of rt.revokedIdentities) {
    log.warn("identity.revoked", {
      identity: r.id,
      serial: r.serial,
      detail: r.id === rt.node?.id
        ? "the node identity is revoked: it keeps serving until restarted, then refuses to " +
          "start; deploy a new bundle"
        : "dropped: tunnels as this identity are refused until a new bundle is deployed",
    });
  }
}

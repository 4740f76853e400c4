/**
 * Two ways a change goes wrong, neither of which may take anything down:
 * 1. the operator deploys a cluster.yaml with a mistake: florctl refuses it before
 *    pushing anything (exit 1, "nothing was pushed"), and every node keeps its file;
 * 2. a node's installed cluster.yaml is damaged (a half-copied file) and the agent is
 *    told to reload: it logs `config.reload_failed` and keeps serving the old config;
 *    the next `florctl deploy` puts the right file back.
 * Nothing is excused: any request failing meanwhile fails the run.
 */
import { join } from "node:path";
import type { FaultOutcome } from "../model.ts";
import { type Fault, round2, waitFor } from "./fault.ts";

/** florctl validates before any SSH: a refusal takes one start-up, a few seconds. */
export const REFUSE_BOUND_S = 15;
/** The damaged node's reload failure is logged at once (SIGHUP, parse, refuse). */
export const RELOAD_FAIL_BOUND_S = 3;

export function brokenDeploy(node: string): Fault {
  return {
    kind: "broken-deploy",
    window_s: 30,
    async run(ctx, started_s) {
      const file = join(ctx.inst.dir, "cluster.yaml");
      const good = await Deno.readTextFile(file);
      const installed = join(ctx.inst.paths[node].config, "cluster.yaml");
      const before = await Deno.readTextFile(installed);
      const notes: string[] = [];
      let ok = true;

      // 1. A service pointed at a node that does not exist.
      const service = ctx.services.find((s) => s.node === node)!;
      const broken = good.replace(
        new RegExp(`(\\n  ${service.name}:\\n(?:.*\\n)*?\\s+node: )${node}\\n`),
        "$1n99\n",
      );
      if (broken === good) throw new Error(`testbed: could not break ${service.name} in ${file}`);
      await Deno.writeTextFile(file, broken);
      const r = await ctx.inst.florctl(["deploy"]);
      const refused_s = round2(ctx.now());
      await Deno.writeTextFile(file, good);
      const refused = r.code === 1 && /nothing was pushed/.test(r.stderr);
      const kept = (await Deno.readTextFile(installed)) === before;
      notes.push(
        refused
          ? `florctl refused it (${round2(refused_s - started_s)} s)`
          : `florctl exit ${r.code}`,
        kept ? `${node} kept its cluster.yaml` : `${node}'s cluster.yaml CHANGED`,
      );
      ok &&= refused && kept && refused_s - started_s <= REFUSE_BOUND_S;

      // 2. A damaged file on the node itself, then a reload.
      const damaged_s = round2(ctx.now());
      await Deno.writeTextFile(
        installed,
        before.slice(0, Math.floor(before.length / 2)) + "\n  : [",
      );
      const pid = Number((await Deno.readTextFile(ctx.inst.paths[node].pidFile)).trim());
      Deno.kill(pid, "SIGHUP");
      const failed = await waitFor(
        ctx,
        RELOAD_FAIL_BOUND_S + 3,
        async () =>
          (await ctx.nodeEvents(node, "config.reload_failed")).find((x) => x.t_s >= damaged_s),
      );
      notes.push(
        failed
          ? `${node} logged config.reload_failed after ${round2(failed.t_s - damaged_s)} s`
          : `${node} did NOT log config.reload_failed`,
      );
      ok &&= failed !== undefined && failed.t_s - damaged_s <= RELOAD_FAIL_BOUND_S;
      const probeUser = ctx.activeUsers().find((u) => service.allow.includes(`group:${u.group}`));
      if (probeUser && service.kind !== "echo") {
        const p = await ctx.traffic.probe(probeUser, service);
        notes.push(p.ok ? `${service.name} still served` : `${service.name} FAILED: ${p.error}`);
        ok &&= p.ok;
      }
      await ctx.inst.florctlOk(["deploy", "--node", node]);
      const restored = (await Deno.readTextFile(installed)) === before;
      const restored_s = round2(ctx.now());
      notes.push(restored ? "deploy restored the file" : "deploy did NOT restore the file");
      ok &&= restored;
      const out: FaultOutcome = {
        kind: "broken-deploy",
        target: node,
        started_s,
        detected_s: refused_s,
        recovered_s: restored_s,
        detect_bound_s: REFUSE_BOUND_S,
        bound_s: RELOAD_FAIL_BOUND_S,
        recover_from_s: damaged_s,
        ok,
        notes,
        excuses: [],
      };
      return out;
    },
  };
}

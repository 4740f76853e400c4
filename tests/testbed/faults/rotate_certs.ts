/**
 * Certificate rotation as the operator does it: `florctl rotate` renews every certificate
 * (here: all, `--within 400d`), `florctl deploy` pushes them and restarts each node whose
 * own certificate changed. Users keep their older, still valid certificates. Each node
 * must come back: a user's agent has it up (`peer.up`) within 2 s of its `agent.started`.
 * Requests to a node while it restarts are excused; nothing else is.
 */
import { join } from "node:path";
import type { FaultOutcome } from "../model.ts";
import { type Fault, round2, waitFor } from "./fault.ts";

export const RECOVER_BOUND_S = 2;
const SETTLE_S = 2;

export function rotateCerts(): Fault {
  return {
    kind: "rotate-certs",
    window_s: 45,
    async run(ctx, started_s) {
      const certs = new Map<string, string>();
      for (const n of ctx.topo.nodes) {
        const f = join(ctx.inst.paths[n.name].config, "certs", `node-${n.name}.crt`);
        certs.set(n.name, await Deno.readTextFile(f));
      }
      const rotated = await ctx.inst.florctlOk(["rotate", "--within", "400d"]);
      const renewed = (rotated.match(/renewed node:/g) ?? []).length;
      const out = await ctx.inst.florctlOk(["deploy"]);
      const deployed_s = round2(ctx.now());
      ctx.say(`rotated ${renewed} node certificates, deployed`);
      const notes = [`${renewed} node certificates renewed, deploy done at ${deployed_s} s`];
      let ok = renewed === ctx.topo.nodes.length;
      let last = 0;
      let worst = 0;
      for (const n of ctx.topo.nodes) {
        const f = join(ctx.inst.paths[n.name].config, "certs", `node-${n.name}.crt`);
        const changed = (await Deno.readTextFile(f)) !== certs.get(n.name);
        const restarted = new RegExp(`${n.name}: restarted`).test(out);
        const started = (await ctx.nodeEvents(n.name, "agent.started")).find((x) =>
          x.t_s >= started_s
        );
        const up = started &&
          await waitFor(
            ctx,
            RECOVER_BOUND_S + 8,
            () =>
              ctx.userEvents("peer.up").find((x) => x.e.node === n.name && x.t_s >= started.t_s),
          );
        const d = up && started ? round2(up.t_s - started.t_s) : null;
        if (!changed || !restarted || d === null || d > RECOVER_BOUND_S) ok = false;
        if (d !== null) worst = Math.max(worst, d);
        if (up) last = Math.max(last, up.t_s);
        if (!changed || !restarted || d === null) {
          notes.push(
            `${n.name}: ${changed ? "" : "certificate NOT replaced; "}${
              restarted ? "" : "NOT restarted; "
            }${d === null ? "not seen back up" : ""}`,
          );
        }
      }
      notes.push(`each node back for users within ${worst} s of its agent.started`);
      const result: FaultOutcome = {
        kind: "rotate-certs",
        target: "all nodes",
        started_s,
        detected_s: deployed_s,
        recovered_s: last > 0 ? round2(last) : null,
        detect_bound_s: null,
        bound_s: RECOVER_BOUND_S,
        recover_from_s: null,
        ok,
        notes,
        excuses: [{
          from_s: started_s,
          to_s: Math.max(last, deployed_s) + SETTLE_S,
          nodes: ctx.topo.nodes.map((n) => n.name),
        }],
      };
      return result;
    },
  };
}

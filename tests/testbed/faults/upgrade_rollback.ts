/**
 * An agent upgrade that does not come up: `florctl enroll node` with a release whose flor
 * exits at once. enroll must notice (the node does not answer over the mesh with the new
 * config), put the previous release back and say so (exit 1); the node then serves again
 * on the release it had, and users have it up within 2 s of its `agent.started`. Requests
 * to that node during the attempt are excused.
 */
import { join } from "node:path";
import type { FaultOutcome } from "../model.ts";
import { type Fault, round2, waitFor } from "./fault.ts";
import { VERIFY_TIMEOUT_MS } from "../../../ctl/support/node_verify.ts";

export const RECOVER_BOUND_S = 2;
/** enroll gives the new release VERIFY_TIMEOUT_MS (15 s) to answer, rolls back and gives
 * the old one as long again (ctl/commands/enroll.ts, ctl/support/node_verify.ts); add 15 s
 * for the stop, starts and SSH steps. */
export const ROLLBACK_BOUND_S = VERIFY_TIMEOUT_MS / 1000 * 2 + 15;
const SETTLE_S = 2;

export function upgradeRollback(node: string): Fault {
  return {
    kind: "upgrade-rollback",
    window_s: ROLLBACK_BOUND_S + 15,
    async run(ctx, started_s) {
      const broken = join(ctx.inst.dir, "..", "flor-broken");
      await Deno.writeTextFile(
        broken,
        "#!/bin/sh\necho 'this release is broken' >&2\nexit 1\n",
        { mode: 0o755 },
      );
      const r = await ctx.inst.florctl(["enroll", "node", node, "--binary", broken]);
      const done_s = round2(ctx.now());
      const rolledBack = r.code === 1 &&
        /upgrade failed; rolled back to the previous release/.test(r.stdout);
      ctx.say(`upgrade of ${node} with a broken release: florctl exit ${r.code}`);
      const started = (await ctx.nodeEvents(node, "agent.started")).findLast((x) =>
        x.t_s >= started_s
      );
      const up = started &&
        await waitFor(
          ctx,
          RECOVER_BOUND_S + 8,
          () => ctx.userEvents("peer.up").find((x) => x.e.node === node && x.t_s >= started.t_s),
        );
      const pid = Number((await Deno.readTextFile(ctx.inst.paths[node].pidFile)).trim());
      const exe = await Deno.realPath(`/proc/${pid}/exe`).catch(() => "gone");
      const onRelease = exe === join(ctx.inst.paths[node].bin, "runtime", "deno");
      const d = up && started ? round2(up.t_s - started.t_s) : null;
      const ok = rolledBack && onRelease && done_s - started_s <= ROLLBACK_BOUND_S &&
        d !== null && d <= RECOVER_BOUND_S;
      const out: FaultOutcome = {
        kind: "upgrade-rollback",
        target: node,
        started_s,
        detected_s: done_s,
        recovered_s: up ? round2(up.t_s) : null,
        detect_bound_s: ROLLBACK_BOUND_S,
        bound_s: RECOVER_BOUND_S,
        recover_from_s: started ? round2(started.t_s) : null,
        ok,
        notes: [
          rolledBack
            ? `florctl rolled back after ${
              round2(done_s - started_s)
            } s (bound ${ROLLBACK_BOUND_S} s)`
            : `florctl exit ${r.code}, no rollback: ${r.stdout.trim().split("\n").at(-1)}`,
          onRelease ? "running the previous release again" : `running ${exe}`,
          d === null ? "not seen back up by users" : `users had it up ${d} s after agent.started`,
        ],
        excuses: [{
          from_s: started_s,
          to_s: (up?.t_s ?? ctx.now()) + SETTLE_S,
          nodes: [node],
        }],
      };
      return out;
    },
  };
}

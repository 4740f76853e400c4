/**
 * kill -9 of a node's agent, then a restart as its supervisor would do it. Detected when
 * a user's agent reports the node down (`peer.down`, bound 3 s: keep-alive 1 s, idle
 * timeout); recovered when a user's agent has it back (`peer.up`, bound 2 s after the
 * restarted agent logged `agent.started`: how long a process takes to start is the
 * machine's, and is reported beside). Requests to that node fail meanwhile, and only those
 * are excused.
 */
import { controlScript } from "../../../ctl/support/remote_node.ts";
import type { FaultOutcome } from "../model.ts";
import { withinBound } from "../verdict.ts";
import { type Fault, round2, waitFor } from "./fault.ts";

export const DETECT_BOUND_S = 3;
/** The README's promise: back within 2 s of the restarted agent's start. What can exceed it
 * on a loaded machine (one CI run: 2.17 s; not reproduced in two 1-minute kill-9 runs here,
 * 0.31 s, and 0.21 s under 4 busy loops): a user's reconnect dial to the dead node is never
 * refused (Linux reports no ICMP error to an unconnected UDP socket), so it lasts its whole
 * timeout, max(0.5 s, 4 × the pair's answer time) up to 2.5 s (agent/peer_pool.ts
 * reconnectTimeout), and QUIC resends its Initial only about 1 s and 3 s into it. A node that
 * starts just after the 1 s resend is reached by the next dial, up to that timeout − 1 s
 * later, then a first handshake and auth on a cold agent. Slow answers before the kill (load)
 * stretch the timeout; the bound is the product's, so it stays. */
export const RECOVER_BOUND_S = 2;
/** The supervisor restarts after this long: longer than the detection bound, so detection
 * is measured on a node that is really gone (systemd's RestartSec=2s would race it). */
const RESTART_AFTER_S = 4;
/** Requests under way this long after recovery still count as the fault's. */
const SETTLE_S = 2;

export function killAgent(node: string): Fault {
  return {
    kind: "kill-9",
    window_s: 15,
    async run(ctx, started_s) {
      const paths = ctx.inst.paths[node];
      const pid = Number((await Deno.readTextFile(paths.pidFile)).trim());
      Deno.kill(pid, "SIGKILL");
      ctx.say(`kill -9 ${node}'s agent (pid ${pid})`);
      const down = await waitFor(
        ctx,
        DETECT_BOUND_S + 5,
        () => ctx.userEvents("peer.down").find((x) => x.e.node === node && x.t_s >= started_s),
      );
      const wait = started_s + RESTART_AFTER_S - ctx.now();
      if (wait > 0) await ctx.sleep(wait);
      const restart_s = round2(ctx.now());
      // What `--init none` installs in place of a supervisor (ctl/support/remote_node.ts).
      const r = await ctx.topo.tb.run(node, [
        "sh",
        "-c",
        controlScript("none", paths, "ensure-running"),
      ]);
      if (r.code !== 0) throw new Error(`testbed: restarting ${node} failed: ${r.stderr}`);
      const started = await waitFor(
        ctx,
        20,
        async () => (await ctx.nodeEvents(node, "agent.started")).find((x) => x.t_s >= restart_s),
      );
      const back_s = started ? round2(started.t_s) : restart_s;
      const up = await waitFor(
        ctx,
        RECOVER_BOUND_S + 8,
        () => ctx.userEvents("peer.up").find((x) => x.e.node === node && x.t_s >= back_s),
      );
      const detected = withinBound("peer.down", started_s, down?.t_s ?? null, DETECT_BOUND_S);
      const recovered = withinBound(
        "peer.up after agent.started",
        started ? back_s : null,
        up?.t_s ?? null,
        RECOVER_BOUND_S,
      );
      const unclean = await waitFor(
        ctx,
        2,
        async () =>
          (await ctx.nodeEvents(node, "agent.unclean_restart")).find((x) => x.t_s >= restart_s),
      );
      const out: FaultOutcome = {
        kind: "kill-9",
        target: node,
        started_s,
        detected_s: down ? round2(down.t_s) : null,
        recovered_s: up ? round2(up.t_s) : null,
        detect_bound_s: DETECT_BOUND_S,
        bound_s: RECOVER_BOUND_S,
        recover_from_s: back_s,
        ok: detected.ok && recovered.ok && unclean !== undefined,
        notes: [
          detected.note,
          `restarted at ${restart_s} s, agent.started ${
            started ? `${round2(back_s - restart_s)} s later` : "never"
          }`,
          recovered.note,
          unclean ? "node logged agent.unclean_restart" : "node did NOT log agent.unclean_restart",
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

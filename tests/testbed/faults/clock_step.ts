/**
 * A node's clock jumps 45 s ahead (a bad NTP server, a VM resumed): `florctl doctor` must
 * name that node's clock, and traffic must go on (45 s is inside the ±60 s window auth
 * timestamps are checked in). The namespaces share the machine's clock, so the node's agent
 * is restarted under libfaketime, whose offset file is then changed while it runs: a live
 * step seen only by that process. The restart is excused for that node; the step is not.
 * Needs the Debian package `faketime`.
 */
import { join } from "node:path";
import { controlScript } from "../../../ctl/support/remote_node.ts";
import type { FaultOutcome } from "../model.ts";
import { type Fault, round2, waitFor } from "./fault.ts";

export const STEP_S = 45;
/** doctor asks every node over the mesh once: a few seconds, more on a loaded machine. */
export const DETECT_BOUND_S = 30;
const LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const SETTLE_S = 3;

interface Check {
  check: string;
  subject: string;
  verdict: string;
  detail: string;
}

export function clockStep(node: string): Fault {
  return {
    kind: "clock-step",
    window_s: 70,
    async run(ctx, started_s) {
      await Deno.stat(LIBFAKETIME).catch(() => {
        throw new Error(`${LIBFAKETIME} is missing: apt-get install faketime`);
      });
      const paths = ctx.inst.paths[node];
      const offsetFile = join(ctx.inst.dir, "..", `${node}.faketime`);
      await Deno.writeTextFile(offsetFile, "+0\n");
      const old = Number((await Deno.readTextFile(paths.pidFile)).trim());
      Deno.kill(old, "SIGTERM");
      await waitFor(ctx, 10, () => Deno.stat(`/proc/${old}`).then(() => undefined, () => true));
      const restart_s = round2(ctx.now());
      const r = await ctx.topo.tb.run(node, [
        "sh",
        "-c",
        controlScript("none", paths, "ensure-running"),
      ], {
        env: {
          LD_PRELOAD: LIBFAKETIME,
          FAKETIME_TIMESTAMP_FILE: offsetFile,
          FAKETIME_NO_CACHE: "1",
          // Timers and timeouts run on the monotonic clock, which a real step leaves alone.
          FAKETIME_DONT_FAKE_MONOTONIC: "1",
        },
      });
      if (r.code !== 0) throw new Error(`testbed: restarting ${node} under faketime: ${r.stderr}`);
      const started = await waitFor(
        ctx,
        20,
        async () => (await ctx.nodeEvents(node, "agent.started")).find((x) => x.t_s >= restart_s),
      );
      const up = started &&
        await waitFor(
          ctx,
          10,
          () => ctx.userEvents("peer.up").find((x) => x.e.node === node && x.t_s >= started.t_s),
        );
      const back_s = round2(up?.t_s ?? ctx.now());

      const doctor = async (): Promise<Check | undefined> => {
        const d = await ctx.inst.florctl(["doctor", "--json"]);
        try {
          return (JSON.parse(d.stdout).checks as Check[]).find((c) =>
            c.check === "clock_skew" && c.subject === node
          );
        } catch {
          return undefined;
        }
      };
      const step_s = round2(ctx.now());
      await Deno.writeTextFile(offsetFile, `+${STEP_S}\n`);
      ctx.say(`${node}'s clock stepped ${STEP_S} s ahead`);
      const seen = await doctor();
      const detected_s = round2(ctx.now());
      const named = seen?.verdict === "fail" && /ahead of/.test(seen.detail);
      await ctx.sleep(Math.max(0, step_s + 20 - ctx.now())); // traffic under the stepped clock
      await Deno.writeTextFile(offsetFile, "+0\n");
      const after = await doctor();
      const recovered_s = round2(ctx.now());
      const cleared = after?.verdict === "ok";
      const out: FaultOutcome = {
        kind: "clock-step",
        target: `${node} +${STEP_S} s`,
        started_s: step_s,
        detected_s,
        recovered_s,
        detect_bound_s: DETECT_BOUND_S,
        bound_s: DETECT_BOUND_S,
        recover_from_s: recovered_s,
        ok: !!up && named && detected_s - step_s <= DETECT_BOUND_S && cleared,
        notes: [
          `restarted under libfaketime at ${restart_s} s, users had it back at ${back_s} s`,
          seen
            ? `doctor: ${seen.verdict}: ${seen.detail} (${round2(detected_s - step_s)} s)`
            : "doctor did not report the node's clock",
          after ? `after the step back: ${after.verdict}` : "doctor silent after the step back",
        ],
        excuses: [{ from_s: started_s, to_s: back_s + SETTLE_S, nodes: [node] }],
      };
      return out;
    },
  };
}

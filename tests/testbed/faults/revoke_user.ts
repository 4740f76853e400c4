/**
 * A user's laptop is lost: `florctl revoke user:X` + `florctl deploy`. Each node cuts the
 * user's live tunnels as it takes the new map (bound 1 s from that node's
 * `config.reloaded`, measured where the user's idle connections see their end), the user
 * is refused afterwards, and nobody else's connection is touched (the verdict counts any
 * other idle connection that closed). Only the revoked user's failures are excused, to
 * the end of the run.
 */
import { allowedFor } from "../cluster_shape.ts";
import type { FaultOutcome } from "../model.ts";
import { type Fault, round2, waitFor } from "./fault.ts";

export const CUT_BOUND_S = 1;

export function revokeUser(user: string): Fault {
  return {
    kind: "revoke-user",
    window_s: 30,
    async run(ctx, started_s) {
      const u = ctx.users.find((x) => x.name === user)!;
      const echo = allowedFor(u, ctx.services).filter((s) => s.kind === "echo");
      const open = new Set(
        ctx.traffic.idleEvents.filter((e) => e.user === user).reduce((m, e) => {
          if (e.ev === "open") m.add(e.service);
          if (e.ev === "closed") m.delete(e.service);
          return m;
        }, new Set<string>()),
      );
      ctx.traffic.retire(user);
      ctx.markRevoked(user);
      await ctx.inst.florctlOk(["revoke", `user:${user}`, "--reason", "testbed: laptop lost"]);
      ctx.say(`revoke user:${user} (${open.size} idle connections open), deploy`);
      await ctx.inst.florctlOk(["deploy"]);
      const deployed_s = round2(ctx.now());
      const notes: string[] = [`deploy done at ${deployed_s} s`];
      let ok = open.size > 0;
      if (open.size === 0) notes.push("the user had no idle connection open to watch");
      let lastCut: number | null = null;
      let worst = 0;
      for (const s of echo.filter((s) => open.has(s.name))) {
        const cut = await waitFor(
          ctx,
          3,
          () =>
            ctx.traffic.idleEvents.find((e) =>
              e.user === user && e.service === s.name && e.ev === "closed" &&
              (e.t - ctx.t0Ms) / 1000 >= started_s
            ),
        );
        const reload = (await ctx.nodeEvents(s.node, "config.reloaded")).find((x) =>
          x.t_s >= started_s
        );
        if (!cut || !reload) {
          ok = false;
          notes.push(
            `${s.name} on ${s.node}: ${cut ? "" : "not cut"}${reload ? "" : " no reload"}`,
          );
          continue;
        }
        const cut_s = (cut.t - ctx.t0Ms) / 1000;
        const d = round2(cut_s - reload.t_s);
        worst = Math.max(worst, d);
        lastCut = Math.max(lastCut ?? 0, cut_s);
        if (d > CUT_BOUND_S) ok = false;
      }
      if (lastCut !== null) notes.push(`tunnels cut at most ${worst} s after their node's reload`);
      const web = ctx.services.find((s) =>
        s.kind === "web" && s.allow.includes(`group:${u.group}`)
      );
      if (web) {
        const probe = await ctx.traffic.probe(u, web);
        notes.push(probe.ok ? "REVOKED USER STILL SERVED" : `refused afterwards (${probe.error})`);
        if (probe.ok) ok = false;
      }
      const out: FaultOutcome = {
        kind: "revoke-user",
        target: `user:${user}`,
        started_s,
        detected_s: lastCut === null ? null : round2(lastCut),
        recovered_s: deployed_s,
        detect_bound_s: null,
        bound_s: CUT_BOUND_S,
        recover_from_s: null,
        ok,
        notes,
        excuses: [{ from_s: started_s, to_s: ctx.runSeconds + 3600, principals: [`user:${user}`] }],
      };
      return out;
    },
  };
}

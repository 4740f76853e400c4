/**
 * An everyday change under traffic: a new service and a wider policy (devs may now use an
 * ssh service), in cluster.yaml, then `florctl deploy`. No allowed tunnel may drop (the
 * verdict counts every closed idle connection; nothing is excused); the new service and
 * the newly allowed one must work for a user within the map refresh bound: nodes take the
 * map with deploy, users' agents ask for it every `map_refresh_s` (60 s by default).
 */
import { join } from "node:path";
import { parseDocument, type YAMLSeq } from "yaml";
import { type ServiceSpec, SPARE_WEB_PORT } from "../cluster_shape.ts";
import type { FaultOutcome } from "../model.ts";
import { withinBound } from "../verdict.ts";
import { type Fault, round2, waitFor } from "./fault.ts";
import { serviceAddArgs } from "../../e2e/harness.ts";

/** Users' default map_refresh_s (agent/config.ts) plus one probe interval and a request. */
export const USABLE_BOUND_S = 60 + 5;
const PROBE_EVERY_S = 1;

export function deployService(): Fault {
  return {
    kind: "deploy-service",
    window_s: USABLE_BOUND_S + 20,
    async run(ctx, started_s) {
      const web = ctx.services.filter((s) => s.kind === "web").at(-1)!;
      const added: ServiceSpec = {
        ...web,
        name: "fresh",
        port: SPARE_WEB_PORT,
        target: `127.0.0.1:${SPARE_WEB_PORT}`,
        allow: ["group:devs", "group:ops"],
      };
      const ssh = ctx.services.find((s) => s.kind === "ssh");
      await ctx.inst.florctlOk([
        ...serviceAddArgs(added.name, added.node, added.target, added.allow.join(",")),
      ]);
      if (ssh) {
        const file = join(ctx.inst.dir, "cluster.yaml");
        const doc = parseDocument(await Deno.readTextFile(file));
        (doc.getIn(["services", ssh.name, "allow"]) as YAMLSeq).add("group:devs");
        await Deno.writeTextFile(file, doc.toString());
      }
      await ctx.inst.florctlOk(["deploy"]);
      const deployed_s = round2(ctx.now());
      ctx.say(
        `deployed service ${added.name} on ${added.node}${ssh ? ` and devs on ${ssh.name}` : ""}`,
      );
      const dev = ctx.activeUsers().find((u) => u.group === "devs");
      const probeUntilOk = (s: ServiceSpec) =>
        dev
          ? waitFor(ctx, USABLE_BOUND_S + 5, async () => {
            const p = await ctx.traffic.probe(dev, s);
            if (p.ok) return p;
            await ctx.sleep(PROBE_EVERY_S);
          })
          : Promise.resolve(undefined);
      const [fresh, widened] = await Promise.all([
        probeUntilOk(added),
        ssh ? probeUntilOk(ssh) : Promise.resolve(undefined),
      ]);
      const a = withinBound(
        `${added.name} usable by ${dev?.name}`,
        deployed_s,
        fresh?.end_s ?? null,
        USABLE_BOUND_S,
      );
      const b = ssh
        ? withinBound(
          `${ssh.name} usable by ${dev?.name}`,
          deployed_s,
          widened?.end_s ?? null,
          USABLE_BOUND_S,
        )
        : { ok: true, note: "no ssh service to widen" };
      const last = Math.max(fresh?.end_s ?? 0, widened?.end_s ?? 0);
      const out: FaultOutcome = {
        kind: "deploy-service",
        target: `${added.name} on ${added.node}`,
        started_s,
        detected_s: null,
        recovered_s: last > 0 ? round2(last) : null,
        detect_bound_s: null,
        bound_s: USABLE_BOUND_S,
        recover_from_s: deployed_s,
        ok: a.ok && b.ok,
        notes: [`deploy done at ${deployed_s} s`, a.note, b.note],
        excuses: [],
      };
      return out;
    },
  };
}

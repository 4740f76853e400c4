/**
 * Site A cut off from the WAN for 20 s: the WAN router drops every UDP packet to or from
 * site A (TCP still passes, as when a firewall change blocks only QUIC). Detected when a
 * user's agent reports a site-A node down; recovered when every site-A node it lost is
 * back up. Only users' requests to site-A nodes are excused: site A's own LAN keeps working.
 */
import type { FaultOutcome } from "../model.ts";
import { withinBound } from "../verdict.ts";
import { type Fault, round2, waitFor } from "./fault.ts";

export const PARTITION_S = 20;
export const DETECT_BOUND_S = 3;
/** Users re-make a lost connection every second; a handshake across the WAN and the first
 * retransmission timer fit in 3 s. */
export const RECOVER_BOUND_S = 3;
const SETTLE_S = 2;
const TABLE = "testbed_partition";
const SITE_A = "10.1.0.0/16";

function rules(on: boolean): string {
  const reset = `table inet ${TABLE}\ndelete table inet ${TABLE}\n`;
  if (!on) return reset;
  return reset + `table inet ${TABLE} {\n  chain forward_udp {\n` +
    `    type filter hook forward priority 0; policy accept;\n` +
    `    meta l4proto udp ip saddr ${SITE_A} drop\n` +
    `    meta l4proto udp ip daddr ${SITE_A} drop\n  }\n}\n`;
}

export function partitionSite(): Fault {
  return {
    kind: "partition",
    window_s: PARTITION_S + 15,
    async run(ctx, started_s) {
      const siteA = ctx.topo.nodes.filter((n) => n.site === "a").map((n) => n.name);
      const nft = async (on: boolean) => {
        const r = await ctx.topo.tb.run(ctx.topo.routers.wan, [
          "sh",
          "-c",
          `printf '%s' '${rules(on)}' | nft -f -`,
        ]);
        if (r.code !== 0) throw new Error(`testbed: nft on the WAN router: ${r.stderr}`);
      };
      await nft(true);
      ctx.say(`partition: UDP to/from site A (${siteA.join(", ")}) dropped for ${PARTITION_S} s`);
      const down = await waitFor(
        ctx,
        DETECT_BOUND_S + 5,
        () =>
          ctx.userEvents("peer.down").find((x) =>
            siteA.includes(String(x.e.node)) && x.t_s >= started_s
          ),
      );
      const wait = started_s + PARTITION_S - ctx.now();
      if (wait > 0) await ctx.sleep(wait);
      const lost = new Set(
        ctx.userEvents("peer.down").filter((x) =>
          siteA.includes(String(x.e.node)) && x.t_s >= started_s
        ).map((x) => `${x.agent}/${x.e.node}`),
      );
      await nft(false);
      const healed_s = round2(ctx.now());
      ctx.say(`partition healed; ${lost.size} user/node pairs to come back`);
      const backAt = (): number | undefined => {
        let last = 0;
        for (const pair of lost) {
          const up = ctx.userEvents("peer.up").find((x) =>
            `${x.agent}/${x.e.node}` === pair && x.t_s >= healed_s
          );
          if (!up) return undefined;
          last = Math.max(last, up.t_s);
        }
        return last;
      };
      const back = lost.size > 0 ? await waitFor(ctx, RECOVER_BOUND_S + 10, backAt) : undefined;
      const detected = withinBound("peer.down", started_s, down?.t_s ?? null, DETECT_BOUND_S);
      const recovered = withinBound(
        `all ${lost.size} lost pairs peer.up after heal`,
        healed_s,
        back ?? null,
        RECOVER_BOUND_S,
      );
      const out: FaultOutcome = {
        kind: "partition",
        target: `site A (${siteA.join(", ")})`,
        started_s,
        detected_s: down ? round2(down.t_s) : null,
        recovered_s: back !== undefined ? round2(back) : null,
        detect_bound_s: DETECT_BOUND_S,
        bound_s: RECOVER_BOUND_S,
        recover_from_s: healed_s,
        ok: detected.ok && recovered.ok,
        notes: [detected.note, `healed at ${healed_s} s`, recovered.note],
        excuses: [{
          from_s: started_s,
          to_s: (back ?? ctx.now()) + SETTLE_S,
          nodes: siteA,
          principals: ctx.users.map((u) => `user:${u.name}`),
        }],
      };
      return out;
    },
  };
}

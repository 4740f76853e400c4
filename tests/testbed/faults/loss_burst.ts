/**
 * 5 % packet loss on the WAN for 30 s (on the emulated site links, or every packet the WAN
 * router forwards on plain veths; both ways).
 * Nothing is to be detected or excused: QUIC retransmits, so every transfer must complete
 * with the right sha256, only slower. The outcome lists what ran during the burst.
 */
import type { FaultOutcome } from "../model.ts";
import { type Fault, round2 } from "./fault.ts";

export const LOSS = 0.05;
export const BURST_S = 30;
/** Requests still finishing this long after the burst count as inside it. */
const TAIL_S = 5;

export function lossBurst(): Fault {
  return {
    kind: "loss-burst",
    window_s: BURST_S + TAIL_S,
    async run(ctx, started_s) {
      await ctx.topo.setWanLoss(LOSS);
      ctx.say(`loss burst: ${LOSS * 100}% on the WAN for ${BURST_S} s`);
      await ctx.sleep(started_s + BURST_S - ctx.now());
      await ctx.topo.setWanLoss(0);
      const ended_s = round2(ctx.now());
      await ctx.sleep(TAIL_S);
      const during = ctx.traffic.records.filter((r) =>
        r.start_s >= started_s && r.start_s <= ended_s
      );
      const failed = during.filter((r) => !r.ok);
      const downloads = during.filter((r) => r.kind === "download" && r.ok)
        .map((r) => r.latency_ms).sort((a, b) => a - b);
      const median = downloads[Math.floor(downloads.length / 2)];
      const out: FaultOutcome = {
        kind: "loss-burst",
        target: `WAN ${LOSS * 100}%`,
        started_s,
        detected_s: null,
        recovered_s: ended_s,
        detect_bound_s: null,
        bound_s: BURST_S,
        recover_from_s: started_s,
        ok: failed.length === 0 && during.length > 0,
        notes: [
          `${during.length} requests started in the burst, ${failed.length} failed`,
          `${downloads.length} 1 MiB downloads verified` +
          (median === undefined ? "" : `, median ${median} ms`),
        ],
        excuses: [],
      };
      return out;
    },
  };
}

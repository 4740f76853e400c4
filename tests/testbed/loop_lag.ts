/**
 * The agents' own view of their event loops, read from their metrics endpoints
 * (flor_event_loop_lag_seconds: p99 and max of each 5 s window, agent/resources.ts), and
 * the machine's load average: what a soak on a shared machine needs to tell a slow network
 * from a stalled process.
 */
import type { Topology } from "./topology.ts";
import { NODE_METRICS } from "./topology.ts";

export interface LoopLag {
  p99_ms: number;
  max_ms: number;
}

/** Pure: the lag quantiles from one metrics page; undefined when the series is missing. */
export function parseLoopLag(metrics: string): LoopLag | undefined {
  const q = (quantile: string) => {
    const m = new RegExp(
      `^flor_event_loop_lag_seconds\\{quantile="${quantile.replace(".", "\\.")}"\\} (\\S+)$`,
      "m",
    ).exec(metrics);
    return m ? Number(m[1]) * 1000 : NaN;
  };
  const p99 = q("0.99");
  const max = q("1");
  if (!Number.isFinite(p99) || !Number.isFinite(max)) return undefined;
  return { p99_ms: Math.round(p99 * 10) / 10, max_ms: Math.round(max * 10) / 10 };
}

/** Separates the pages of one curl run over several URLs (`-w`, after each). */
const PAGE_END = "#flor-testbed-page-end";

/** Pure: the pages of `curl -w '\n#...\n' URL...` in URL order (a failed URL: empty page). */
export function splitPages(stdout: string): string[] {
  return stdout.split(`${PAGE_END}\n`).slice(0, -1);
}

/** The 1-minute load average from /proc/loadavg's text. */
export function parseLoadAvg(text: string): number {
  return Number(text.split(" ")[0]);
}

/** Each agent's lag now, by name: nodes (one curl in each node's namespace), users (one
 * curl for all, in their namespace). Agents that did not answer are left out. */
export async function readLoopLags(
  topo: Topology,
  users: Array<{ name: string; metrics: number }>,
): Promise<Map<string, LoopLag>> {
  const out = new Map<string, LoopLag>();
  const fetch = async (ns: string, names: string[], urls: string[]) => {
    const r = await topo.tb.run(ns, [
      "curl",
      "-s",
      "-m",
      "2",
      "-w",
      `\n${PAGE_END}\n`,
      ...urls,
    ]).catch(() => undefined);
    if (!r) return;
    splitPages(r.stdout).forEach((page, i) => {
      const lag = parseLoopLag(page);
      if (lag && names[i]) out.set(names[i], lag);
    });
  };
  await Promise.all([
    ...topo.nodes.map((n) => fetch(n.ns, [n.name], [`http://${NODE_METRICS}/metrics`])),
    fetch(
      "u",
      users.map((u) => u.name),
      users.map((u) => `http://127.0.0.1:${u.metrics}/metrics`),
    ),
  ]);
  return out;
}

/**
 * How CONNECT → first echoed byte settles as a proxy runs (why `deno task bench` warms up
 * before it measures, tests/bench/bench_options.ts WARMUP_CONNECTS): in the bench's loopback
 * environment, the bench client's samples of a freshly started proxy, one by one, as
 * medians of each block of 200, for direct TCP, ssh -D, a fresh user agent and the same
 * agent again with a new client process; `--rounds` times, interleaved.
 *
 *   deno run -A tests/bench/warmup_curve.ts [--samples N] [--rounds R]   (root: a namespace)
 */
import { createBenchEnv } from "./bench_env.ts";
import { LOOPBACK_SIZES } from "./bench_options.ts";
import type { ClientResult } from "./bench_client.ts";
import { median } from "./report.ts";

/** Samples per printed median. */
const BLOCK = 200;

function curve(label: string, r: ClientResult): string {
  const blocks = [];
  for (let i = 0; i < r.latencyMs.length; i += BLOCK) {
    blocks.push(median(r.latencyMs.slice(i, i + BLOCK)).toFixed(2));
  }
  return `${label.padEnd(12)} cold ${r.coldMs.toFixed(1).padStart(6)}  by ${BLOCK}: ${
    blocks.join(" ")
  }`;
}

export async function warmupCurve(samples: number, rounds: number): Promise<string[]> {
  const sizes = {
    ...LOOPBACK_SIZES,
    flowBytes: 1024 * 1024,
    concurrent: 2,
    latencyCount: samples,
    warmupConnects: 0,
  };
  const env = await createBenchEnv({ name: "loopback" });
  const lines: string[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      lines.push(curve("direct", await env.runClient("direct", sizes)));
      const ssh = await env.startSshProxy();
      try {
        lines.push(curve("ssh -D", await env.runClient("ssh", sizes)));
      } finally {
        await ssh.stop();
      }
      const flor = await env.startFlorProxy();
      try {
        lines.push(curve("flor fresh", await env.runClient("flor", sizes)));
        lines.push(curve("flor again", await env.runClient("flor", sizes)));
      } finally {
        await flor.stop();
      }
    }
    return lines;
  } finally {
    await env.destroy();
  }
}

if (import.meta.main) {
  const arg = (name: string, dflt: number) => {
    const i = Deno.args.indexOf(`--${name}`);
    return i >= 0 ? Number(Deno.args[i + 1]) : dflt;
  };
  for (const line of await warmupCurve(arg("samples", 2000), arg("rounds", 3))) console.log(line);
}

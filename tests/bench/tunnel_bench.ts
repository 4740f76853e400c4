/**
 * `deno task bench`: direct TCP, `ssh -D` (a real sshd, key auth, aes128-gcm) and Florete
 * (user agent → QUIC → node agent) measured side by side by the same client, on loopback
 * and on emulated WAN links (tests/wan), in one run: one flow MB/s, N × 1 MiB at once,
 * CONNECT → first echoed byte (median, p99), the first request on a cold proxy, peak RSS of
 * each proxy process, the agents' event-loop lag, the node's UDP receive overflows, and
 * Florete/ssh ratios. The issue's targets are printed as PASS/FAIL lines, not asserted.
 *
 *   deno task bench [--links ...] [--repeats N] [--json FILE] [--smoke]   (--help for all)
 *
 * Needs root (network namespaces, TUN devices) and OpenSSH's ssh and sshd.
 */
import { SAMPLE_INTERVAL_MS as LAG_WINDOW_MS } from "../../agent/resources.ts";
import { canCreateNamespaces } from "../e2e/netns.ts";
import { type BenchOptions, BenchUsage, type LinkSpec, parseBenchArgs } from "./bench_options.ts";
import { type BenchEnv, createBenchEnv, type Proxy } from "./bench_env.ts";
import {
  type BenchReport,
  evaluateTargets,
  formatTable,
  formatTargets,
  type LinkInfo,
  median,
  mergeReports,
  type PathRun,
  percentile,
} from "./report.ts";

async function runLink(
  link: LinkSpec,
  o: BenchOptions,
  runs: PathRun[],
): Promise<LinkInfo> {
  const sizes = link.profile ? o.wan : o.loopback;
  const env = await createBenchEnv(link);
  try {
    for (let repeat = 0; repeat < o.repeats; repeat++) {
      for (const path of o.paths) {
        console.error(`bench: ${link.name}, ${path}, run ${repeat + 1} of ${o.repeats}`);
        runs.push(await _measure(env, link.name, repeat, path, sizes));
      }
    }
    return { name: link.name, congestion: env.congestion };
  } finally {
    await env.destroy();
  }
}

async function _measure(
  env: BenchEnv,
  link: string,
  repeat: number,
  path: PathRun["path"],
  sizes: BenchOptions["wan"],
): Promise<PathRun> {
  let proxy: Proxy | undefined;
  const rssNames: string[] = [];
  if (path === "flor") {
    proxy = await env.startFlorProxy();
    rssNames.push("user agent");
  } else if (path === "ssh") {
    proxy = await env.startSshProxy();
    rssNames.push("ssh");
  }
  try {
    const overflowsBefore = await env.udpRcvbufErrors();
    const lag = path === "flor" ? _sampleLag(env) : undefined;
    const r = await env.runClient(path, sizes).finally(() => lag?.stop());
    const overflows = (await env.udpRcvbufErrors()) - overflowsBefore;
    const peakRssMb: Record<string, number> = {};
    if (proxy) {
      const [own, ...rest] = await proxy.pids();
      peakRssMb[rssNames[0]] = await _peakRssMb([own]);
      if (path === "ssh") peakRssMb["sshd"] = await _peakRssMb(rest);
      else peakRssMb["node agent"] = await _peakRssMb([env.node.child.pid]);
    }
    return {
      link,
      repeat,
      path,
      coldMs: r.coldMs,
      latencyMedianMs: median(r.latencyMs),
      latencyP99Ms: percentile(r.latencyMs, 0.99),
      flowBytes: r.flow.bytes,
      flowMBps: r.flow.bytes / r.flow.seconds / 1e6,
      concurrent: {
        n: r.concurrent.n,
        bytesEach: sizes.concurrentBytes,
        seconds: r.concurrent.seconds,
        completed: r.concurrent.completed,
      },
      peakRssMb,
      eventLoopLagMs: lag ? await lag.worst : {},
      udpRcvbufErrors: overflows,
    };
  } finally {
    await proxy?.stop();
  }
}

/**
 * Scrapes the agents' event-loop lag while the client runs and keeps the worst value per
 * agent: each scrape covers the agent's last sampling window, so a run is seen whole. After
 * stop() it goes on until the window holding the run's end has closed: an agent reports 0
 * until its first window closes, and a user agent started for a short loopback run (under 5
 * s) read 0 for the whole run.
 */
function _sampleLag(env: BenchEnv): { stop(): void; worst: Promise<Record<string, number>> } {
  let until = Infinity;
  const worst: Record<string, number> = {};
  const done = (async () => {
    while (performance.now() < until) {
      for (const [k, v] of Object.entries(await env.florLagMs())) {
        worst[k] = Math.max(worst[k] ?? 0, v);
      }
      await new Promise((r) => setTimeout(r, LAG_SAMPLE_MS));
    }
    return worst;
  })();
  return {
    stop: () => (until = performance.now() + LAG_WINDOW_MS + LAG_SAMPLE_MS),
    worst: done,
  };
}

/** Sum of VmHWM (peak resident set) over the pids, MB; a vanished pid counts 0. */
async function _peakRssMb(pids: number[]): Promise<number> {
  let kb = 0;
  for (const pid of pids) {
    const status = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
    kb += Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
  }
  return kb * 1024 / 1e6;
}

/** Scrapes per second: agents summarise lag per LAG_WINDOW_MS window. */
const LAG_SAMPLE_MS = 1_000;

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  if (!(await canCreateNamespaces())) {
    throw new Error(
      "bench: needs root and `ip netns` (it builds namespaces and TUN devices); run it as root",
    );
  }
  const loadAvgStart = Deno.loadavg();
  const runs: PathRun[] = [];
  const links: LinkInfo[] = [];
  for (const link of o.links) links.push(await runLink(link, o, runs));
  return {
    date: new Date().toISOString(),
    machine: {
      cpus: navigator.hardwareConcurrency,
      loadAvgStart,
      loadAvgEnd: Deno.loadavg(),
      deno: Deno.version.deno,
    },
    options: o,
    links,
    runs,
    targets: evaluateTargets(runs),
  };
}

export function formatReport(r: BenchReport): string {
  const la = (l: number[]) => l.map((v) => v.toFixed(1)).join(" ");
  return [
    `Florete bench ${r.date}: ${r.machine.cpus} CPUs, load ${la(r.machine.loadAvgStart)} → ` +
    `${la(r.machine.loadAvgEnd)}, Deno ${r.machine.deno}, ${r.options.repeats} run(s)` +
    (r.options.smoke ? " (SMOKE: tiny sizes, numbers mean nothing)" : ""),
    "",
    formatTable(r.links, r.runs),
    "",
    "congestion control (TCP: client/server namespace sysctl; Florete: agents' config):",
    ...r.links.map((l) =>
      `  ${l.name}: TCP ${l.congestion.tcpClient}/${l.congestion.tcpServer}, Florete ${l.congestion.flor}`
    ),
    "",
    "targets (issue 10):",
    formatTargets(r.targets),
  ].join("\n");
}

if (import.meta.main) {
  let options: BenchOptions;
  try {
    options = parseBenchArgs(Deno.args);
  } catch (e) {
    if (e instanceof BenchUsage) {
      console.log(e.message);
      Deno.exit(0);
    }
    console.error(e instanceof Error ? e.message : e);
    Deno.exit(2);
  }
  const report = options.merge.length > 0
    ? mergeReports(
      await Promise.all(
        options.merge.map(async (f) => JSON.parse(await Deno.readTextFile(f)) as BenchReport),
      ),
    )
    : await runBench(options);
  console.log(formatReport(report));
  if (options.json) await Deno.writeTextFile(options.json, JSON.stringify(report, null, 2) + "\n");
}

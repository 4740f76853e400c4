/**
 * Where one CONNECT's milliseconds go (issue 10: loopback CONNECT → first echoed byte).
 *
 * On 127.0.0.1, in one run and interleaved round by round so load hits every path alike:
 * direct TCP to the echo server, the floor (tests/bench/connect_floor.ts: the same two hops
 * in the fewest Deno operations) and Florete (user agent → QUIC → node agent, started with
 * FLOR_TRACE_PHASES=1). Each sample is what `deno task bench` measures: SOCKS CONNECT, one
 * byte written, the byte echoed back. For Florete the stamps of every sample (the client's,
 * and the agents' `trace.phases` events, on one wall clock) give each phase's median.
 *
 *   deno run -A tests/bench/connect_phases.ts [--samples N] [--rounds R] [--compare DIR]
 *     [--profile DIR]
 *
 * `--compare DIR` adds the agents of another checkout (`git worktree add DIR COMMIT`) as
 * path `flor@compare`, interleaved with the rest: a before/after in one run. `--profile DIR`
 * takes a CPU profile of both of this checkout's agents over the CONNECT rounds
 * (tests/bench/connect_profile.ts) and writes user.cpuprofile, node.cpuprofile and a ranking
 * of each into DIR; that run's CPU per CONNECT includes the profiler's (about 2 × here).
 */
import { join } from "node:path";
import {
  type AgentProcess,
  type Event,
  ExactReader,
  florctlOk,
  freeTcpPort,
  freeUdpPort,
  socksConnect,
  startAgentProcess,
} from "../e2e/harness.ts";
import { throwawayNodeIdentity } from "../lib/node_identity.ts";
import { median, percentile } from "./report.ts";
import { AGENT_V8_FLAGS_ARG } from "../../lib/memory.ts";
import { attachProfiler, type Profiler, rankSelfTime, rankTotalTime } from "./connect_profile.ts";

/** Stamps in the order a CONNECT passes them; `client.*` are the bench client's own. */
export const PHASES = [
  "client.start",
  "user.accepted",
  "user.greeted",
  "user.request_parsed",
  "user.gate_decided",
  "user.stream_opened",
  "node.stream_accepted",
  "node.header_read",
  "node.gate_decided",
  "node.target_dialed",
  "node.replied",
  "node.relay_ready",
  "user.node_replied",
  "user.client_replied",
  "client.socks_done",
  "user.first_byte_read",
  "node.first_to_target",
  "node.first_from_target",
  "user.first_byte_written",
  "client.echoed",
] as const;

export interface PhaseReport {
  /** Per path: every sample's CONNECT → first echoed byte, ms. */
  samples: Record<string, number[]>;
  /** CPU time (user + system) per CONNECT of the proxy's two processes, ms: SOCKS side and
   * node side (direct: none). Unlike latency, load on the machine barely moves it. */
  cpuMs: Record<string, { socks: number; node: number }>;
  /** The same, per MiB carried by BULK_CONNECTIONS connections sending 1 MiB each at once
   * (the bench's 200 × 1 MiB in small), and how long each round took, s. */
  bulk: Record<string, { socks: number; node: number; seconds: number[] }>;
  /** Per path: the part of each sample until the SOCKS reply (direct: the TCP connect). */
  connectMs: Record<string, number[]>;
  /** Florete: each step of PHASES (`a → b`) with its median, ms, over the samples. */
  steps: Array<{ from: string; to: string; medianMs: number; n: number }>;
}

/** Deno starts a process in ~200 ms here; on a loaded machine several take longer. */
const START_TIMEOUT_MS = 20_000;
/** The agents write their last `trace.phases` event just after the client's last sample. */
const TRACE_SETTLE_MS = 300;

const wallNow = () => performance.timeOrigin + performance.now();

interface Sample {
  start: number;
  socksDone: number;
  echoed: number;
}

/** Connections of one bulk round, 1 MiB each, all at once. */
const BULK_CONNECTIONS = 50;
const MIB = 1024 * 1024;

/** One bulk round through a proxy: every connection sends 1 MiB to the sink and waits for
 * its count. */
async function bulk(via: Via, sinkPort: number): Promise<void> {
  const chunk = new Uint8Array(256 * 1024).fill(0x5a);
  await Promise.all(Array.from({ length: BULK_CONNECTIONS }, async () => {
    const conn = await _socks(via.socksPort!, sinkPort, "sink.flor");
    for (let sent = 0; sent < MIB; sent += chunk.length) {
      for (let o = 0; o < chunk.length;) o += await conn.write(chunk.subarray(o));
    }
    await conn.closeWrite();
    await new ExactReader(conn).read(8);
    conn.close();
  }));
}

/** A sample that takes this long is stuck, not slow: the run fails and says where. */
const SAMPLE_TIMEOUT_MS = 10_000;

/** One CONNECT → first echoed byte, by SOCKS5 (socksPort) or directly (echoPort). */
async function sample(to: Via): Promise<Sample> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stuck = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`a CONNECT ${to.name} (:${to.socksPort ?? to.echoPort}) is stuck`)),
      SAMPLE_TIMEOUT_MS,
    );
  });
  try {
    return await Promise.race([_sample(to), stuck]);
  } finally {
    clearTimeout(timer);
  }
}

async function _sample(to: { socksPort?: number; echoPort: number }): Promise<Sample> {
  const start = wallNow();
  const conn = to.socksPort === undefined
    ? await Deno.connect({ hostname: "127.0.0.1", port: to.echoPort })
    : await _socks(to.socksPort, to.echoPort);
  const socksDone = wallNow();
  try {
    await conn.write(Uint8Array.of(42));
    await new ExactReader(conn).read(1);
    return { start, socksDone, echoed: wallNow() };
  } finally {
    conn.close();
  }
}

async function _socks(socksPort: number, port: number, host = "echo.flor"): Promise<Deno.TcpConn> {
  const s = await socksConnect(socksPort, host, port);
  if (s.reply !== 0) throw new Error(`SOCKS CONNECT via :${socksPort}: reply ${s.reply}`);
  return s.conn;
}

/** Starts `deno run` on a script here and waits for the first line it prints. */
async function _spawnPrinting(args: string[]): Promise<{ child: Deno.ChildProcess; line: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", ...args],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const timer = setTimeout(() => child.kill("SIGKILL"), START_TIMEOUT_MS);
  try {
    let out = "";
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`${args.join(" ")} exited before it was ready`);
      out += value;
    }
    return { child, line: out.trim() };
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
}

async function _startFloor(
  dir: string,
): Promise<{ port: number; pids: [number, number]; stop(): Promise<void> }> {
  const id = await throwawayNodeIdentity("floor");
  const [caFile, certFile, keyFile] = ["ca.pem", "node.pem", "node.key"].map((f) => join(dir, f));
  await Deno.writeTextFile(caFile, id.caPem);
  await Deno.writeTextFile(certFile, id.certPem);
  await Deno.writeTextFile(keyFile, id.keyPem);
  const script = join(import.meta.dirname!, "connect_floor.ts");
  const node = await _spawnPrinting([script, "node", certFile, keyFile]);
  const socks = await _spawnPrinting([script, "socks", node.line, caFile]).catch(async (e) => {
    node.child.kill("SIGTERM");
    await node.child.status;
    throw e;
  });
  return {
    port: Number(socks.line),
    pids: [socks.child.pid, node.child.pid],
    async stop() {
      for (const p of [socks.child, node.child]) {
        p.kill("SIGTERM");
        await p.status;
      }
    },
  };
}

/** The two agents on 127.0.0.1, from this checkout or (`repo`) another one; `inspect`: each
 * listens for the V8 inspector on a port of its own (for --profile). */
async function _startFlor(
  dir: string,
  ports: { echo: number; sink: number },
  repo?: string,
  inspect?: { user: number; node: number },
) {
  const cluster = join(dir, "cluster");
  const c = (...args: string[]) => florctlOk([...args, "--dir", cluster]);
  await c("init", "phases");
  await c("node", "add", "n1", "--endpoint", `127.0.0.1:${freeUdpPort()}`);
  await c("user", "add", "alice", "--group", "devs");
  for (const name of ["echo", "sink"] as const) {
    await c(
      "service",
      "add",
      name,
      ...["--node", "n1", "--target", `127.0.0.1:${ports[name]}`, "--allow", "group:devs"],
    );
  }
  await c("bundle", "node", "n1", "--out", join(dir, "b-n1"), "--metrics", "off");
  await c("bundle", "user", "alice", "--out", join(dir, "b-alice"), "--metrics", "off");
  const executable = repo || inspect
    ? await _launcher(dir, repo ?? join(import.meta.dirname!, "../.."), inspect !== undefined)
    : undefined;
  const env = (port?: number) => ({
    FLOR_TRACE_PHASES: "1",
    ...(port ? { FLOR_INSPECT: `--inspect=127.0.0.1:${port}` } : {}),
  });
  const node = await startAgentProcess({
    config: join(dir, "b-n1", "flor.yaml"),
    flags: ["--socks", "off"],
    env: env(inspect?.node),
    executable,
  });
  const user = await startAgentProcess({
    config: join(dir, "b-alice", "flor.yaml"),
    flags: ["--socks", `127.0.0.1:${freeTcpPort()}`],
    env: env(inspect?.user),
    executable,
  }).catch(async (e) => {
    await node.stop();
    throw e;
  });
  const started = await user.waitFor("agent.started");
  const port = Number(String(started.socks).split(":").pop());
  if (!Number.isInteger(port) || port <= 0) {
    await Promise.all([user.stop(), node.stop()]);
    throw new Error("the user agent did not say which SOCKS port it bound");
  }
  return { node, user, port };
}

/** Runs flor from a checkout with the V8 flags tests/e2e/harness.ts gives this one's (the
 * young generation's size sets how often the collector runs: a comparison needs the same);
 * `inspect`: with the inspector flag the process finds in $FLOR_INSPECT. */
async function _launcher(dir: string, repo: string, inspect: boolean): Promise<string> {
  const path = join(dir, "flor-launcher");
  const script = `#!/bin/sh\nexec ${Deno.execPath()} run --allow-all ${
    inspect ? "$FLOR_INSPECT " : ""
  }--config ${join(repo, "deno.json")} ${AGENT_V8_FLAGS_ARG} ${join(repo, "agent/main.ts")} "$@"\n`;
  await Deno.writeTextFile(path, script, { mode: 0o755 });
  return path;
}

/** CPU time a process has used so far (utime + stime of /proc/PID/stat), ms. */
export async function cpuMsOf(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Fields after the command (which may hold spaces) start after its closing parenthesis.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 1000 / CLOCK_TICKS_PER_S;
}

/** Linux's USER_HZ for /proc/PID/stat times, 100 on every mainstream architecture. */
const CLOCK_TICKS_PER_S = 100;

/** Each step's median over the samples. A sample's traces are the agents' `trace.phases`
 * whose first stamp falls between its start and its echo (samples run one at a time). */
export function phaseSteps(
  samples: Sample[],
  userTraces: Event[],
  nodeTraces: Event[],
): PhaseReport["steps"] {
  const within = (traces: Event[], s: Sample) =>
    traces.find((t) => (t.t0 as number) >= s.start && (t.t0 as number) <= s.echoed);
  const gaps = new Map<string, number[]>();
  for (const s of samples) {
    const at: Record<string, number> = {
      "client.start": s.start,
      "client.socks_done": s.socksDone,
      "client.echoed": s.echoed,
    };
    for (const [side, traces] of [["user", userTraces], ["node", nodeTraces]] as const) {
      const t = within(traces, s);
      if (!t) continue;
      const phases = t.phases as Record<string, number>;
      for (const [p, ms] of Object.entries(phases)) at[`${side}.${p}`] = (t.t0 as number) + ms;
    }
    const present = PHASES.filter((p) => at[p] !== undefined);
    for (let j = 1; j < present.length; j++) {
      const key = `${present[j - 1]}\n${present[j]}`;
      let list = gaps.get(key);
      if (!list) gaps.set(key, list = []);
      list.push(at[present[j]] - at[present[j - 1]]);
    }
  }
  return [...gaps].map(([k, v]) => {
    const [from, to] = k.split("\n");
    return { from, to, medianMs: median(v), n: v.length };
  });
}

/** What one path of the comparison is: how the client reaches the echo server, and the
 * proxy's two processes (SOCKS side, node side) whose CPU time is counted. */
interface Via {
  name: string;
  socksPort?: number;
  echoPort: number;
  pids?: [number, number];
  agents?: { user: AgentProcess; node: AgentProcess };
}

/** `compare`: a checkout of another commit, measured as path `flor@compare` in the same run;
 * `profileDir`: where the CPU profiles of this checkout's agents over the CONNECT rounds go. */
export async function measurePhases(
  samples: number,
  rounds: number,
  compare?: string,
  profileDir?: string,
): Promise<PhaseReport> {
  const dir = await Deno.makeTempDir({ prefix: "florete-phases-" });
  const stops: Array<() => Promise<void>> = [() => Deno.remove(dir, { recursive: true })];
  const profilers: Array<["user" | "node", Profiler]> = [];
  try {
    const servers = await _spawnPrinting([
      join(import.meta.dirname!, "bench_servers.ts"),
      "0",
      "0",
    ]);
    stops.unshift(async () => {
      servers.child.kill("SIGTERM");
      await servers.child.status;
    });
    const [sinkPort, echoPort] = servers.line.split(" ").slice(1).map(Number); // "listening S E"
    const floor = await _startFloor(dir);
    stops.unshift(floor.stop);
    const via: Record<string, Via> = {
      direct: { name: "direct", echoPort },
      floor: { name: "floor", socksPort: floor.port, echoPort, pids: floor.pids },
    };
    const flors: Array<[string, string | undefined]> = [["flor", undefined]];
    if (compare) flors.push(["flor@compare", compare]);
    for (const [name, repo] of flors) {
      const sub = join(dir, name);
      await Deno.mkdir(sub);
      const inspect = profileDir && !repo
        ? { user: freeTcpPort(), node: freeTcpPort() }
        : undefined;
      const f = await _startFlor(sub, { echo: echoPort, sink: sinkPort }, repo, inspect);
      if (inspect) {
        for (const side of ["user", "node"] as const) {
          const p = await attachProfiler(inspect[side]);
          stops.unshift(() => Promise.resolve(p.close()));
          profilers.push([side, p]);
        }
      }
      stops.unshift(() => f.user.stop(), () => f.node.stop());
      via[name] = {
        name,
        socksPort: f.port,
        echoPort,
        pids: [f.user.child.pid, f.node.child.pid],
        agents: f,
      };
    }
    const paths = Object.keys(via);
    const total: Record<string, number[]> = {};
    const connectMs: Record<string, number[]> = {};
    const cpu: Record<string, [number, number]> = {};
    const florSamples: Sample[] = [];
    for (const p of paths) [total[p], connectMs[p], cpu[p]] = [[], [], [0, 0]];
    // One unmeasured CONNECT each: the QUIC connections and the code paths warm up.
    for (const p of paths) await sample(via[p]);
    for (const [, p] of profilers) await p.start();
    for (let r = 0; r < rounds; r++) {
      for (const p of paths) {
        const pids = via[p].pids;
        const before = pids ? await Promise.all(pids.map(cpuMsOf)) : [];
        for (let i = 0; i < samples; i++) {
          const s = await sample(via[p]);
          total[p].push(s.echoed - s.start);
          connectMs[p].push(s.socksDone - s.start);
          if (p === "flor") florSamples.push(s);
        }
        if (!pids) continue;
        // Each side's work for a tunnel ends once both ends closed: let it finish.
        await new Promise((r) => setTimeout(r, TRACE_SETTLE_MS));
        const after = await Promise.all(pids.map(cpuMsOf));
        for (let k = 0; k < 2; k++) cpu[p][k] += after[k] - before[k];
      }
    }
    await new Promise((r) => setTimeout(r, TRACE_SETTLE_MS));
    for (const [side, p] of profilers) {
      const profile = await p.stop();
      // Detached before the bulk rounds: with a session still open the user agent was seen
      // spinning at 100% CPU after them, and the run never ended.
      p.close();
      await Deno.writeTextFile(join(profileDir!, `${side}.cpuprofile`), JSON.stringify(profile));
      await Deno.writeTextFile(
        join(profileDir!, `${side}.txt`),
        `self time, % of busy samples\n${rankSelfTime(profile)}\n\n` +
          `total time (Florete's functions)\n${rankTotalTime(profile)}\n`,
      );
    }
    const bulkCpu: PhaseReport["bulk"] = {};
    for (let r = 0; r < rounds; r++) {
      for (const p of paths) {
        const pids = via[p].pids;
        if (!pids) continue;
        bulkCpu[p] ??= { socks: 0, node: 0, seconds: [] };
        const before = await Promise.all(pids.map(cpuMsOf));
        const t0 = performance.now();
        await bulk(via[p], sinkPort);
        bulkCpu[p].seconds.push((performance.now() - t0) / 1000);
        await new Promise((r) => setTimeout(r, TRACE_SETTLE_MS));
        const after = await Promise.all(pids.map(cpuMsOf));
        const mib = BULK_CONNECTIONS * rounds;
        bulkCpu[p].socks += (after[0] - before[0]) / mib;
        bulkCpu[p].node += (after[1] - before[1]) / mib;
      }
    }
    const traced = (a: AgentProcess) => a.events.filter((e) => e.message === "trace.phases");
    const { user, node } = via.flor.agents!;
    const n = samples * rounds;
    const cpuMs: PhaseReport["cpuMs"] = {};
    for (const p of paths) {
      if (via[p].pids) cpuMs[p] = { socks: cpu[p][0] / n, node: cpu[p][1] / n };
    }
    return {
      samples: total,
      connectMs,
      cpuMs,
      bulk: bulkCpu,
      steps: phaseSteps(florSamples, traced(user), traced(node)),
    };
  } finally {
    for (const stop of stops) await stop().catch(() => {});
  }
}

export function formatPhases(r: PhaseReport): string {
  const ms = (v: number) => v.toFixed(3).padStart(7);
  const lines = [
    "path          median     p90 ms: CONNECT → first echoed byte; median until the reply",
  ];
  for (const path of Object.keys(r.samples)) {
    const v = r.samples[path];
    lines.push(
      `${path.padEnd(12)} ${ms(median(v))} ${ms(percentile(v, 0.9))}    ` +
        `${ms(median(r.connectMs[path]))}`,
    );
  }
  lines.push("", "CPU per CONNECT, ms: SOCKS side, node side");
  for (const [path, c] of Object.entries(r.cpuMs)) {
    lines.push(`${path.padEnd(12)} ${ms(c.socks)} ${ms(c.node)}`);
  }
  lines.push("", `${BULK_CONNECTIONS} × 1 MiB at once: CPU per MiB, ms (SOCKS side, node side); s`);
  for (const [path, b] of Object.entries(r.bulk)) {
    const secs = b.seconds.map((v) => v.toFixed(2)).join(" ");
    lines.push(`${path.padEnd(12)} ${ms(b.socks)} ${ms(b.node)}    ${secs}`);
  }
  lines.push("", "Florete, median of each step, ms:");
  let sum = 0;
  for (const s of r.steps) {
    sum += s.medianMs;
    lines.push(`${s.medianMs.toFixed(3).padStart(7)}  ${s.from} → ${s.to} (${s.n})`);
  }
  lines.push(`${sum.toFixed(3).padStart(7)}  sum of the step medians`);
  return lines.join("\n");
}

if (import.meta.main) {
  const arg = (name: string, dflt: number) => {
    const i = Deno.args.indexOf(`--${name}`);
    return i >= 0 ? Number(Deno.args[i + 1]) : dflt;
  };
  const str = (name: string) => {
    const i = Deno.args.indexOf(`--${name}`);
    return i >= 0 ? Deno.args[i + 1] : undefined;
  };
  const profile = str("profile");
  if (profile) await Deno.mkdir(profile, { recursive: true });
  console.log(
    formatPhases(
      await measurePhases(arg("samples", 100), arg("rounds", 3), str("compare"), profile),
    ),
  );
}

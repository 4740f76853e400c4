/**
 * One testbed run, start to verdict: build the release, the namespaces and the cluster,
 * start the clients and the resource sampler, run the faults on their schedule, stop,
 * judge, write the report. Cleanup happens on every path (a failed step, Ctrl-C).
 */
import { dirname } from "node:path";
import {
  GATEWAY,
  type ServiceSpec,
  serviceSpecs,
  type UserSpec,
  userSpecs,
} from "./cluster_shape.ts";
import { logReader, processEvents, readPid, sampleProcess } from "./agents.ts";
import type { Fault, FaultContext, TimedEvent } from "./faults/fault.ts";
import { brokenDeploy } from "./faults/broken_deploy.ts";
import { clockStep } from "./faults/clock_step.ts";
import { deployService } from "./faults/deploy_service.ts";
import { killAgent } from "./faults/kill_agent.ts";
import { lossBurst } from "./faults/loss_burst.ts";
import { partitionSite } from "./faults/partition.ts";
import { revokeUser } from "./faults/revoke_user.ts";
import { rotateCerts } from "./faults/rotate_certs.ts";
import { upgradeRollback } from "./faults/upgrade_rollback.ts";
import { buildRelease, install, type Installed } from "./install.ts";
import type { AgentSample, FaultOutcome, LoadSample, Report, RequestRecord } from "./model.ts";
import { parseLoadAvg, readLoopLags } from "./loop_lag.ts";
import { reportMarkdown } from "./report.ts";
import { type Clock, planFaults, type PlannedFault, runSchedule } from "./schedule.ts";
import { timelineSvg } from "./timeline_svg.ts";
import { buildTopology, type NodeSpec, nodeSpecs, type Topology, wanProfile } from "./topology.ts";
import { idleRecords, pinHostKeys, startTraffic, type Traffic } from "./traffic.ts";
import { judge } from "./verdict.ts";

export interface RunOptions {
  nodes: number;
  users: number;
  services: number;
  minutes: number;
  /** Fault kinds to run, in order (default: all of FAULT_KINDS). */
  faults?: string[];
  wan: string;
  /** JSON report path; the markdown and SVG go beside it (.md, .svg). */
  report: string;
}

/** Every fault the testbed knows, in the order a full run schedules them (revocation last:
 * the revoked user is gone for the rest of the run). */
export const FAULT_KINDS = [
  "kill-9",
  "partition",
  "loss-burst",
  "broken-deploy",
  "deploy-service",
  "rotate-certs",
  "upgrade-rollback",
  "clock-step",
  "revoke-user",
] as const;
/** Node log events kept in the JSON report (tunnel opens and closes would drown them). */
const NODE_EVENTS = /^(peer|config|policy|agent|resource|auth|quic|flow)\./;
/** Agents' RSS and descriptors are read this often; a 60-minute soak makes 720 samples. */
const SAMPLE_S = 5;

class Stopped extends Error {}

function makeFault(kind: string, nodes: NodeSpec[], users: UserSpec[]): Fault {
  switch (kind) {
    case "kill-9":
      return killAgent(nodes.at(-1)!.name);
    case "partition":
      return partitionSite();
    case "loss-burst":
      return lossBurst();
    case "broken-deploy":
      return brokenDeploy(nodes[0].name);
    case "deploy-service":
      return deployService();
    case "rotate-certs":
      return rotateCerts();
    case "upgrade-rollback":
      return upgradeRollback(nodes[0].name);
    case "clock-step":
      return clockStep(nodes.at(-1)!.name);
    case "revoke-user":
      return revokeUser(users.at(-1)!.name);
  }
  throw new Error(`testbed: unknown fault '${kind}'; known: ${FAULT_KINDS.join(", ")}`);
}

/** Everything one run holds while it runs; what cleanup and the report read. */
interface Session {
  o: RunOptions;
  say: (line: string) => void;
  stop: AbortController;
  tmp: string;
  users: UserSpec[];
  services: ServiceSpec[];
  topo?: Topology;
  inst?: Installed;
  traffic?: Traffic;
  sampler?: Promise<void>;
  nodeLog?: () => Promise<TimedEvent[]>;
  /** Traffic start (epoch ms); run seconds count from here. */
  t0Ms: number;
  /** Run seconds at which traffic stopped (0 while running). */
  endS: number;
  samples: AgentSample[];
  load: LoadSample[];
  /** Revoked users and when (run seconds). */
  revoked: Record<string, number>;
  outcomes: FaultOutcome[];
  nodeEvents: Array<Record<string, unknown>>;
}

export async function run(o: RunOptions, say: (line: string) => void): Promise<Report> {
  const kinds = o.faults ?? [...FAULT_KINDS];
  for (const k of kinds) {
    if (!(FAULT_KINDS as readonly string[]).includes(k)) {
      throw new Error(`testbed: unknown fault '${k}'; known: ${FAULT_KINDS.join(", ")}`);
    }
  }
  wanProfile(o.wan); // refuses a bad --wan before anything is built
  const users = userSpecs(o.users);
  // Planned first: a run too short for its faults is refused before anything is built.
  const plan = planFaults(
    kinds.map((k) => {
      const fault = makeFault(k, nodeSpecs(o.nodes), users);
      return { fault, window_s: fault.window_s };
    }),
    o.minutes * 60,
  );
  const st: Session = {
    o,
    say,
    stop: new AbortController(),
    tmp: await Deno.makeTempDir({ prefix: "flor-testbed-" }),
    users,
    services: [],
    t0Ms: Date.now(),
    endS: 0,
    samples: [],
    load: [],
    revoked: {},
    outcomes: [],
    nodeEvents: [],
  };
  const onSigint = () => {
    say("Ctrl-C: stopping, cleaning up");
    st.stop.abort();
  };
  Deno.addSignalListener("SIGINT", onSigint);
  const started_at = new Date().toISOString();
  let aborted: string | undefined;
  try {
    await _session(st, plan);
  } catch (e) {
    aborted = e instanceof Stopped ? "stopped (Ctrl-C)" : (e as Error).message;
    say(`run stopped: ${aborted}`);
  } finally {
    await _cleanup(st);
    Deno.removeSignalListener("SIGINT", onSigint);
  }
  const requests = [
    ...(st.traffic?.records ?? []),
    ...idleRecords(st.traffic?.idleEvents ?? [], st.services, st.t0Ms, st.endS),
  ].sort((a, b) => a.start_s - b.start_s);
  const report = judge({
    started_at,
    shape: { nodes: o.nodes, users: o.users, services: o.services, minutes: o.minutes, wan: o.wan },
    faults: st.outcomes,
    requests,
    samples: st.samples,
    load: st.load,
    retired: st.revoked,
    aborted,
  });
  if (st.outcomes.length < kinds.length && !aborted) {
    report.verdict = "fail";
    report.reasons.push(`only ${st.outcomes.length} of ${kinds.length} faults ran`);
  }
  await _writeReports(st, report, requests);
  return report;
}

/** Build, install, drive, inject: everything up to the end of the schedule. */
async function _session(st: Session, plan: PlannedFault<Fault>[]): Promise<void> {
  const { o, say } = st;
  const sleep = _sleeper(st.stop.signal);
  // Setup steps report through this; after Ctrl-C the next step stops the run instead.
  const step = (line: string) => {
    if (st.stop.signal.aborted) throw new Stopped("stopped during setup");
    say(line);
  };
  say(`working in ${st.tmp}`);
  const release = await buildRelease(st.tmp, step);
  step(`namespaces: ${o.nodes} nodes on two sites, users, operator, LAN (WAN ${o.wan})`);
  const topo = st.topo = await buildTopology(o.nodes, st.tmp, o.wan);
  const sshPorts = Object.fromEntries(topo.nodes.map((n, i) => [n.name, topo.sshds[i].port]));
  st.services = serviceSpecs(topo.nodes, o.services, topo.lanAddr, sshPorts);
  const inst = st.inst = await install(
    topo,
    { services: st.services, users: st.users },
    st.tmp,
    release,
    step,
  );
  step("installed");
  say(
    `traffic for ${o.minutes} min; faults at ${
      plan.map((p) => `${p.fault.kind}@${p.at_s}s`).join(", ")
    }`,
  );
  st.t0Ms = Date.now();
  const now = () => (Date.now() - st.t0Ms) / 1000;
  const sshds = new Map(topo.nodes.map((n, i) => [n.name, topo.sshds[i]]));
  await pinHostKeys(sshds);
  const traffic = st.traffic = startTraffic({
    topo,
    users: st.users,
    services: st.services,
    blobSha256: inst.blobSha256,
    lanPassword: inst.lanPassword,
    sshds,
    now,
  });
  st.sampler = _sample(st, now, sleep);
  const readers = new Map(
    topo.nodes.map((n) => [n.name, logReader(n.name, inst.paths[n.name].log, st.t0Ms)]),
  );
  st.nodeLog = async () => (await Promise.all([...readers.values()].map((r) => r("*")))).flat();
  const ctx: FaultContext = {
    topo,
    inst,
    traffic,
    users: st.users,
    services: st.services,
    now,
    t0Ms: st.t0Ms,
    sleep,
    say: (line) => say(`${now().toFixed(1)} s: ${line}`),
    userEvents: (m) => processEvents(inst.users, m, st.t0Ms),
    nodeEvents: (node, m) => readers.get(node)!(m),
    activeUsers: () => st.users.filter((u) => !(u.name in st.revoked)),
    markRevoked: (u) => (st.revoked[u] = Math.round(now() * 10) / 10),
    runSeconds: o.minutes * 60,
  };
  const clock: Clock = { now, sleep };
  await runSchedule(plan, o.minutes * 60, clock, async (p, started_s) => {
    const out = await _runFault(p.fault, ctx, Math.round(started_s * 100) / 100);
    say(`${now().toFixed(1)} s: ${out.kind} ${out.ok ? "ok" : "FAILED"}: ${out.notes.join("; ")}`);
    st.outcomes.push(out);
  }, () => st.stop.signal.aborted);
}

/** A fault whose own step throws (a command that failed) is a failed fault, not a crash. */
async function _runFault(fault: Fault, ctx: FaultContext, s: number): Promise<FaultOutcome> {
  try {
    return await fault.run(ctx, s);
  } catch (e) {
    if (e instanceof Stopped) throw e;
    return {
      kind: fault.kind,
      target: "-",
      started_s: s,
      detected_s: null,
      recovered_s: null,
      detect_bound_s: null,
      bound_s: 0,
      recover_from_s: null,
      ok: false,
      notes: [`the fault's own step failed: ${(e as Error).message}`],
      excuses: [{ from_s: s, to_s: ctx.now() + 5 }],
    };
  }
}

/** RSS, descriptors and event-loop lag of every agent, and the machine's load, every
 * SAMPLE_S until traffic stops. */
async function _sample(
  st: Session,
  now: () => number,
  sleep: (s: number) => Promise<void>,
): Promise<void> {
  const { topo, inst } = st;
  if (!topo || !inst) return;
  while (!st.stop.signal.aborted && st.endS === 0) {
    const t = now();
    const procs: Array<[string, number | undefined]> = [
      // Nodes by their pid file: a restart changes the pid.
      ...topo.nodes.map((n): [string, number | undefined] => [n.name, undefined]),
      ...[...inst.users].map(([n, a]): [string, number] => [n, a.child.pid]),
      ...(inst.gateway ? [[GATEWAY, inst.gateway.child.pid] as [string, number]] : []),
    ];
    const load = await Deno.readTextFile("/proc/loadavg").then(parseLoadAvg, () => NaN);
    if (Number.isFinite(load)) st.load.push({ t_s: Math.round(t * 10) / 10, load1: load });
    const lags = await readLoopLags(topo, st.users);
    for (const [name, pid] of procs) {
      const p = pid ?? await readPid(inst.paths[name].pidFile);
      const s = p === undefined ? undefined : await sampleProcess(name, p, t);
      const lag = lags.get(name);
      if (s) st.samples.push(lag ? { ...s, lag_p99_ms: lag.p99_ms, lag_max_ms: lag.max_ms } : s);
    }
    await sleep(SAMPLE_S).catch(() => {});
  }
}

/** Stops the clients and agents, keeps the nodes' events, deletes namespaces and files. */
async function _cleanup(st: Session): Promise<void> {
  st.endS = (Date.now() - st.t0Ms) / 1000;
  st.stop.abort();
  await st.traffic?.stop().catch(() => {});
  // The nodes' own account (read before their files go), for reading a fault afterwards.
  st.nodeEvents = (await st.nodeLog?.().catch(() => []) ?? [])
    .filter((x) => NODE_EVENTS.test(x.e.message))
    .sort((a, b) => a.t_s - b.t_s)
    .map((x) => ({ ...x.e, t_s: Math.round(x.t_s * 100) / 100, agent: x.agent }));
  await st.sampler;
  for (const a of st.inst?.users.values() ?? []) await a.stop().catch(() => {});
  await st.inst?.gateway?.stop().catch(() => {});
  await st.topo?.destroy().catch((e) => st.say(`cleanup: ${(e as Error).message}`));
  await Deno.remove(st.tmp, { recursive: true }).catch(() => {});
}

/** JSON (with every request, sample and peer event), markdown and SVG side by side. */
async function _writeReports(
  st: Session,
  report: Report,
  requests: RequestRecord[],
): Promise<void> {
  const o = st.o;
  // The users' view of the nodes, for reading a fault's timeline after the run.
  const peer_events = ["peer.up", "peer.down"].flatMap((m) =>
    st.inst ? processEvents(st.inst.users, m, st.t0Ms) : []
  ).sort((a, b) => a.t_s - b.t_s).map((x) => ({
    t_s: Math.round(x.t_s * 100) / 100,
    agent: x.agent,
    message: x.e.message,
    node: x.e.node,
    reason: x.e.reason,
  }));
  // Why each refused request was refused, in the user's own words (reason, detail).
  const refusals = st.inst
    ? processEvents(st.inst.users, "socks.refused", st.t0Ms).map((x) => ({
      t_s: Math.round(x.t_s * 100) / 100,
      agent: x.agent,
      dest: x.e.dest,
      reason: x.e.reason,
      detail: x.e.detail,
    }))
    : [];
  const base = o.report.replace(/\.json$/, "");
  const svgFile = `${base}.svg`;
  await Deno.mkdir(dirname(o.report) || ".", { recursive: true });
  await Deno.writeTextFile(
    o.report,
    JSON.stringify(
      {
        ...report,
        requests_log: requests,
        agent_samples: st.samples,
        peer_events,
        refusals,
        node_events: st.nodeEvents,
      },
      null,
      1,
    ),
  );
  await Deno.writeTextFile(svgFile, timelineSvg(requests, st.outcomes, Math.max(st.endS, 1)));
  const md = reportMarkdown(report, svgFile.split("/").at(-1)!);
  await Deno.writeTextFile(`${base}.md`, md);
  st.say(`report: ${o.report}, ${base}.md, ${svgFile}`);
  console.log(md);
}

/** A sleep that Ctrl-C cuts short (rejects with Stopped). */
function _sleeper(signal: AbortSignal): (s: number) => Promise<void> {
  return (s) =>
    new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(new Stopped("stopped"));
      const done = () => {
        clearTimeout(timer);
        reject(new Stopped("stopped"));
      };
      const timer = setTimeout(() => {
        signal.removeEventListener("abort", done);
        resolve();
      }, Math.max(0, s) * 1000);
      signal.addEventListener("abort", done, { once: true });
    });
}

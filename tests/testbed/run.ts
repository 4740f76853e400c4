/**
 * One testbed run, start to verdict: build the release, the namespaces and the cluster,
 * start the clients and the resource sampler, run the faults on their schedule, stop,
 * judge, write the report. Cleanup happens on every path (a failed step, Ctrl-C).
 */
import { dirname } from "node:path";
import { serviceSpecs, type UserSpec, userSpecs } from "./cluster_shape.ts";
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
import type { AgentSample, FaultOutcome, Report } from "./model.ts";
import { reportMarkdown } from "./report.ts";
import { type Clock, planFaults, runSchedule } from "./schedule.ts";
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
  const runSeconds = o.minutes * 60;
  const stop = new AbortController();
  const onSigint = () => {
    say("Ctrl-C: stopping, cleaning up");
    stop.abort();
  };
  Deno.addSignalListener("SIGINT", onSigint);
  const started_at = new Date().toISOString();
  const tmp = await Deno.makeTempDir({ prefix: "flor-testbed-" });
  let topo: Topology | undefined;
  let inst: Installed | undefined;
  let traffic: Traffic | undefined;
  let sampler: Promise<void> | undefined;
  let aborted: string | undefined;
  let nodeLog: (() => Promise<TimedEvent[]>) | undefined;
  let t0Ms = Date.now();
  const now = () => (Date.now() - t0Ms) / 1000;
  const samples: AgentSample[] = [];
  /** Revoked users and when (run seconds). */
  const revoked: Record<string, number> = {};
  const outcomes: FaultOutcome[] = [];
  let endS = 0;
  let node_events: Array<Record<string, unknown>> = [];
  let svc: ReturnType<typeof serviceSpecs> = [];
  const sleep = (s: number) =>
    new Promise<void>((resolve, reject) => {
      if (stop.signal.aborted) return reject(new Stopped("stopped"));
      const done = () => {
        clearTimeout(timer);
        reject(new Stopped("stopped"));
      };
      const timer = setTimeout(() => {
        stop.signal.removeEventListener("abort", done);
        resolve();
      }, Math.max(0, s) * 1000);
      stop.signal.addEventListener("abort", done, { once: true });
    });
  // Setup steps report through this; after Ctrl-C the next step stops the run instead.
  const step = (line: string) => {
    if (stop.signal.aborted) throw new Stopped("stopped during setup");
    say(line);
  };
  try {
    say(`working in ${tmp}`);
    const release = await buildRelease(tmp, step);
    step(`namespaces: ${o.nodes} nodes on two sites, users, operator, LAN (WAN ${o.wan})`);
    topo = await buildTopology(o.nodes, tmp, o.wan);
    const sshPorts = Object.fromEntries(topo.nodes.map((n, i) => [n.name, topo!.sshds[i].port]));
    svc = serviceSpecs(topo.nodes, o.services, topo.lanAddr, sshPorts);
    inst = await install(topo, { services: svc, users }, tmp, release, step);
    step("installed");
    say(
      `traffic for ${o.minutes} min; faults at ${
        plan.map((p) => `${p.fault.kind}@${p.at_s}s`).join(", ")
      }`,
    );
    t0Ms = Date.now();
    const topoNow = topo;
    const instNow = inst;
    const sshds = new Map(topo.nodes.map((n, i) => [n.name, topoNow.sshds[i]]));
    await pinHostKeys(sshds);
    traffic = startTraffic({
      topo,
      users,
      services: svc,
      blobSha256: inst.blobSha256,
      lanPassword: inst.lanPassword,
      sshds,
      now,
    });
    sampler = (async () => {
      while (!stop.signal.aborted && (endS === 0)) {
        const t = now();
        const procs: Array<[string, number | undefined]> = [
          ...topoNow.nodes.map((n): [string, number | undefined] => [n.name, undefined]),
          ...[...instNow.users].map(([n, a]): [string, number] => [n, a.child.pid]),
          ...(instNow.gateway ? [["office", instNow.gateway.child.pid] as [string, number]] : []),
        ];
        for (const [name, pid] of procs) {
          const p = pid ?? await readPid(instNow.paths[name].pidFile);
          const s = p === undefined ? undefined : await sampleProcess(name, p, t);
          if (s) samples.push(s);
        }
        await sleep(SAMPLE_S).catch(() => {});
      }
    })();
    const readers = new Map(
      topo.nodes.map((n) => [n.name, logReader(n.name, instNow.paths[n.name].log, t0Ms)]),
    );
    const revokedNow = revoked;
    nodeLog = async () => (await Promise.all([...readers.values()].map((r) => r("*")))).flat();
    const ctx: FaultContext = {
      topo,
      inst,
      traffic,
      users,
      services: svc,
      now,
      t0Ms,
      sleep,
      say: (line) => say(`${now().toFixed(1)} s: ${line}`),
      userEvents: (m) => processEvents(instNow.users, m, t0Ms),
      nodeEvents: (node, m) => readers.get(node)!(m),
      activeUsers: () => users.filter((u) => !(u.name in revokedNow)),
      markRevoked: (u) => (revokedNow[u] = Math.round(now() * 10) / 10),
      runSeconds,
    };
    const clock: Clock = { now, sleep };
    await runSchedule(plan, runSeconds, clock, async (p, started_s) => {
      const s = Math.round(started_s * 100) / 100;
      try {
        const out = await p.fault.run(ctx, s);
        say(
          `${now().toFixed(1)} s: ${out.kind} ${out.ok ? "ok" : "FAILED"}: ${out.notes.join("; ")}`,
        );
        outcomes.push(out);
      } catch (e) {
        if (e instanceof Stopped) throw e;
        outcomes.push({
          kind: p.fault.kind,
          target: "-",
          started_s: s,
          detected_s: null,
          recovered_s: null,
          detect_bound_s: null,
          bound_s: 0,
          recover_from_s: null,
          ok: false,
          notes: [`the fault's own step failed: ${(e as Error).message}`],
          excuses: [{ from_s: s, to_s: now() + 5 }],
        });
      }
    }, () => stop.signal.aborted);
  } catch (e) {
    aborted = e instanceof Stopped ? "stopped (Ctrl-C)" : (e as Error).message;
    say(`run stopped: ${aborted}`);
  } finally {
    endS = now();
    stop.abort();
    await traffic?.stop().catch(() => {});
    // The nodes' own account (read before their files go), for reading a fault afterwards.
    node_events = (await nodeLog?.().catch(() => []) ?? [])
      .filter((x) => NODE_EVENTS.test(x.e.message))
      .sort((a, b) => a.t_s - b.t_s)
      .map((x) => ({ ...x.e, t_s: Math.round(x.t_s * 100) / 100, agent: x.agent }));
    await sampler;
    for (const a of inst?.users.values() ?? []) await a.stop().catch(() => {});
    await inst?.gateway?.stop().catch(() => {});
    await topo?.destroy().catch((e) => say(`cleanup: ${(e as Error).message}`));
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    Deno.removeSignalListener("SIGINT", onSigint);
  }

  // The users' view of the nodes, for reading a fault's timeline after the run.
  const peer_events = ["peer.up", "peer.down"].flatMap((m) =>
    inst ? processEvents(inst.users, m, t0Ms) : []
  ).sort((a, b) => a.t_s - b.t_s).map((x) => ({
    t_s: Math.round(x.t_s * 100) / 100,
    agent: x.agent,
    message: x.e.message,
    node: x.e.node,
    reason: x.e.reason,
  }));
  const requests = [
    ...(traffic?.records ?? []),
    ...idleRecords(traffic?.idleEvents ?? [], svc, t0Ms, endS),
  ].sort((a, b) => a.start_s - b.start_s);
  const report = judge({
    started_at,
    shape: { nodes: o.nodes, users: o.users, services: o.services, minutes: o.minutes, wan: o.wan },
    faults: outcomes,
    requests,
    samples,
    retired: revoked,
    aborted,
  });
  if (outcomes.length < kinds.length && !aborted) {
    report.verdict = "fail";
    report.reasons.push(`only ${outcomes.length} of ${kinds.length} faults ran`);
  }
  const base = o.report.replace(/\.json$/, "");
  const svgFile = `${base}.svg`;
  await Deno.mkdir(dirname(o.report) || ".", { recursive: true });
  await Deno.writeTextFile(
    o.report,
    JSON.stringify(
      { ...report, requests_log: requests, agent_samples: samples, peer_events, node_events },
      null,
      1,
    ),
  );
  await Deno.writeTextFile(svgFile, timelineSvg(requests, outcomes, Math.max(endS, 1)));
  const md = reportMarkdown(report, svgFile.split("/").at(-1)!);
  await Deno.writeTextFile(`${base}.md`, md);
  say(`report: ${o.report}, ${base}.md, ${svgFile}`);
  console.log(md);
  return report;
}

/**
 * What every fault module gets and gives. A fault injects itself through the product's
 * outside (signals, nftables, florctl, files on a node), detects and measures through the
 * outside too (the agents' JSON events, florctl's exit, the clients' records), restores
 * what it broke, and returns one FaultOutcome with its bounds. Faults run one at a time.
 */
import type { ServiceSpec, UserSpec } from "../cluster_shape.ts";
import type { Installed } from "../install.ts";
import type { FaultOutcome } from "../model.ts";
import type { Topology } from "../topology.ts";
import type { Traffic } from "../traffic.ts";

/** An agent's log event with its time as run seconds. */
export interface TimedEvent {
  t_s: number;
  /** The agent that logged it: a user name, or a node name for node logs. */
  agent: string;
  e: Record<string, unknown> & { message: string };
}

export interface FaultContext {
  topo: Topology;
  inst: Installed;
  traffic: Traffic;
  users: UserSpec[];
  services: ServiceSpec[];
  /** Run seconds (0 = traffic start). */
  now(): number;
  /** Traffic start as epoch ms (the idle clients' event times are epoch ms). */
  t0Ms: number;
  sleep(seconds: number): Promise<void>;
  say(line: string): void;
  /** Events the users' agents have logged so far (their stdout is captured). */
  userEvents(message: string): TimedEvent[];
  /** Events in a node's log file (written by the agent the node runs). */
  nodeEvents(node: string, message: string): Promise<TimedEvent[]>;
  /** Users not revoked by an earlier fault, for probes. */
  activeUsers(): UserSpec[];
  /** A user is gone for good (revoked): their agent is judged only until now. */
  markRevoked(user: string): void;
  /** Seconds until the run ends (excuses that last to the end use it). */
  runSeconds: number;
}

export interface Fault {
  kind: string;
  /** Run time the fault may take, inject to last check (the scheduler's slot). */
  window_s: number;
  run(ctx: FaultContext, started_s: number): Promise<FaultOutcome>;
}

/** Polls `find` every 100 ms until it returns a value or `timeout_s` passes. */
export async function waitFor<T>(
  ctx: FaultContext,
  timeout_s: number,
  find: () => T | undefined | Promise<T | undefined>,
): Promise<T | undefined> {
  const until = ctx.now() + timeout_s;
  for (;;) {
    const v = await find();
    if (v !== undefined) return v;
    if (ctx.now() >= until) return undefined;
    await ctx.sleep(0.1);
  }
}

export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/**
 * Reading the agents from outside: their resident memory and open descriptors from /proc
 * (nodes by their pid file, users and the gateway by the processes the testbed started),
 * and their JSON events (users' stdout, nodes' log files) with times as run seconds.
 */
import type { AgentProcess } from "../e2e/harness.ts";
import type { TimedEvent } from "./faults/fault.ts";
import type { AgentSample } from "./model.ts";

export async function sampleProcess(
  name: string,
  pid: number,
  t_s: number,
): Promise<AgentSample | undefined> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
    if (!Number.isFinite(kb)) return undefined; // a zombie has no VmRSS
    let fds = 0;
    for await (const _ of Deno.readDir(`/proc/${pid}/fd`)) fds++;
    return { name, pid, t_s: Math.round(t_s * 10) / 10, rss_mb: Math.round(kb / 102.4) / 10, fds };
  } catch {
    return undefined; // gone (killed by a fault, not yet restarted)
  }
}

export async function readPid(file: string): Promise<number | undefined> {
  try {
    const pid = Number((await Deno.readTextFile(file)).trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function timed(agent: string, e: Record<string, unknown>, t0Ms: number): TimedEvent | undefined {
  const ts = Date.parse(String(e["@timestamp"]));
  if (!Number.isFinite(ts) || typeof e.message !== "string") return undefined;
  return { agent, t_s: (ts - t0Ms) / 1000, e: e as TimedEvent["e"] };
}

export function processEvents(
  agents: Map<string, AgentProcess>,
  message: string,
  t0Ms: number,
): TimedEvent[] {
  const out: TimedEvent[] = [];
  for (const [name, a] of agents) {
    for (const e of a.events) {
      if (e.message !== message) continue;
      const t = timed(name, e, t0Ms);
      if (t) out.push(t);
    }
  }
  return out.sort((a, b) => a.t_s - b.t_s);
}

/** A node's log file, read incrementally (the file only grows; a soak makes it large). */
export function logReader(agent: string, file: string, t0Ms: number) {
  let offset = 0;
  let partial = "";
  const decoder = new TextDecoder();
  const events: TimedEvent[] = [];
  /** `message` "*" returns every event. */
  return async (message: string): Promise<TimedEvent[]> => {
    try {
      using f = await Deno.open(file);
      await f.seek(offset, Deno.SeekMode.Start);
      const buf = new Uint8Array(256 * 1024);
      for (;;) {
        const n = await f.read(buf);
        if (n === null) break;
        offset += n;
        partial += decoder.decode(buf.subarray(0, n), { stream: true });
      }
    } catch {
      // not written yet
    }
    const lines = partial.split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      if (!line.startsWith("{")) continue;
      try {
        const t = timed(agent, JSON.parse(line), t0Ms);
        if (t) events.push(t);
      } catch {
        // a line cut by a kill -9
      }
    }
    return message === "*" ? events : events.filter((e) => e.e.message === message);
  };
}

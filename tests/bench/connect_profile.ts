/**
 * CPU profiles of a running agent through the V8 inspector (Deno 2.9.6 has no --cpu-prof):
 * the agent runs with `--inspect=127.0.0.1:PORT`, this connects to its WebSocket, starts the
 * sampling profiler, and on stop writes the `.cpuprofile` (Chrome DevTools opens it) and ranks
 * functions by self time. Used by `tests/bench/connect_phases.ts --profile DIR`.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** The profiler's sampling interval, µs: V8's default (1 ms) sees too few samples of a
 * 2 ms CONNECT; 100 µs gives ~20 per CONNECT and costs a few % of CPU. */
const SAMPLING_INTERVAL_US = 100;

export interface Profiler {
  start(): Promise<void>;
  stop(): Promise<CpuProfile>;
  close(): void;
}

/** Connects to the inspector an agent listens on (`--inspect=127.0.0.1:port`). */
export async function attachProfiler(port: number): Promise<Profiler> {
  const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
  const ws = new WebSocket(list[0].webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let next = 1;
  const pending = new Map<number, (r: unknown) => void>();
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    pending.get(msg.id)?.(msg.result);
    pending.delete(msg.id);
  };
  const call = (method: string, params: unknown = {}) =>
    new Promise<any>((resolve) => {
      const id = next++;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: SAMPLING_INTERVAL_US });
  return {
    start: () => call("Profiler.start"),
    stop: async () => (await call("Profiler.stop")).profile,
    close: () => ws.close(),
  };
}

/** The samples in which the process ran (V8 stamps "(idle)" while it waits for events). */
function busySamples(p: CpuProfile): number[] {
  const idle = new Set(
    p.nodes.filter((n) => n.callFrame.functionName === "(idle)").map((n) => n.id),
  );
  return p.samples.filter((id) => !idle.has(id));
}

/** Self time per function (name, file:line), largest first, as % of the busy samples. */
export function rankSelfTime(p: CpuProfile, top = 40): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  const busy = busySamples(p);
  for (const id of busy) {
    const f = byId.get(id)!.callFrame;
    const file = f.url.replace(/^.*\/(lib|agent|node_modules|ext)\//, "$1/");
    const key = `${f.functionName || "(anonymous)"} ${file}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + 1);
  }
  const n = busy.length;
  return [...self].sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([k, c]) => `${(100 * c / n).toFixed(1).padStart(5)}%  ${k}`).join("\n");
}

/** Total (inclusive) time per function of Florete's own files (agent/, lib/), largest first:
 * what each step of a tunnel costs with everything it calls. */
export function rankTotalTime(p: CpuProfile, top = 40): string {
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const total = new Map<string, number>();
  const busy = busySamples(p);
  for (const id of busy) {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const f = byId.get(at)!.callFrame;
      const m = f.url.match(/\/((?:lib|agent)\/[^/]+)$/);
      if (!m) continue;
      const key = `${f.functionName || "(anonymous)"} ${m[1]}:${f.lineNumber + 1}`;
      if (seen.has(key)) continue;
      seen.add(key);
      total.set(key, (total.get(key) ?? 0) + 1);
    }
  }
  const n = busy.length;
  return [...total].sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([k, c]) => `${(100 * c / n).toFixed(1).padStart(5)}%  ${k}`).join("\n");
}

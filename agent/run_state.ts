/**
 * Did the previous run end cleanly? The agent keeps `run.json` in its state directory while
 * it runs (refreshed every HEARTBEAT_MS) and removes it on a clean stop. Finding it at start
 * means the last run crashed, was killed or lost power: `agent.unclean_restart`, with how long
 * that run lasted as far as its last heartbeat tells. Start counts persist in counters.json.
 */
import { join } from "node:path";
import { writeFileAtomic } from "../lib/atomic_file.ts";

export const HEARTBEAT_MS = 10_000;
const RUN_FILE = "run.json";

export interface RunRecord {
  pid: number;
  started_at: string;
  heartbeat_at: string;
  version: string;
}

export interface Counters {
  starts: number;
  unclean_restarts: number;
}

export interface PreviousRun {
  unclean: boolean;
  /** The recorded process is still alive: another agent uses this state directory. */
  stillRunning?: boolean;
  /** Seconds from the previous start to its last heartbeat (a lower bound of its uptime). */
  uptimeS?: number;
  pid?: number;
  version?: string;
}

/** Pure: what a leftover run record says about the previous run. */
export function assessPreviousRun(prev: unknown): PreviousRun {
  if (!prev || typeof prev !== "object") return { unclean: false };
  const r = prev as Partial<RunRecord>;
  const started = Date.parse(r.started_at ?? "");
  const beat = Date.parse(r.heartbeat_at ?? "");
  return {
    unclean: true,
    uptimeS: Number.isFinite(started) && Number.isFinite(beat)
      ? Math.max(0, Math.round((beat - started) / 1000))
      : undefined,
    pid: typeof r.pid === "number" ? r.pid : undefined,
    version: typeof r.version === "string" ? r.version : undefined,
  };
}

/** Pure: the pid of a run whose heartbeat is recent enough that it is surely still that
 * agent (a stale record's pid may belong to another process by now). */
export function livePid(record: unknown, now: number): number | undefined {
  if (!record || typeof record !== "object") return undefined;
  const r = record as Partial<RunRecord>;
  const beat = Date.parse(r.heartbeat_at ?? "");
  if (typeof r.pid !== "number" || !Number.isFinite(beat)) return undefined;
  return now - beat <= 3 * HEARTBEAT_MS ? r.pid : undefined;
}

/** The run record in a state directory, if any. */
export function readRunRecord(dir: string): Promise<unknown> {
  return readJson(join(dir, RUN_FILE));
}

export interface RunState {
  dir: string;
  previous: PreviousRun;
  counters: Counters;
  /** Marks this run as ended cleanly (removes run.json). */
  markClean(): Promise<void>;
}

/** Signal 0 is not offered by Deno.kill; SIGCONT is harmless to a running process. */
function isAlive(pid: number): boolean {
  if (Deno.build.os === "windows") return false;
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch (e) {
    return e instanceof Deno.errors.PermissionDenied; // alive, owned by someone else
  }
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    return {}; // a torn write from a crash still says the run did not end cleanly
  }
}

function writeJson(path: string, value: unknown) {
  return writeFileAtomic(path, JSON.stringify(value) + "\n");
}

export async function openRunState(dir: string, version: string): Promise<RunState> {
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new Error(
      `cannot create the state directory ${dir} (${(e as Error).message}): set state_dir in ` +
        `flor.yaml or pass --state DIR to a writable directory`,
    );
  }
  const runFile = join(dir, RUN_FILE);
  const countersFile = join(dir, "counters.json");
  let previous = assessPreviousRun(await readJson(runFile));
  if (previous.pid && previous.pid !== Deno.pid && isAlive(previous.pid)) {
    previous = { unclean: false, stillRunning: true, pid: previous.pid };
  }
  const stored = await readJson(countersFile) as Partial<Counters> | undefined;
  const counters: Counters = {
    starts: (stored?.starts ?? 0) + 1,
    unclean_restarts: (stored?.unclean_restarts ?? 0) + (previous.unclean ? 1 : 0),
  };
  await writeJson(countersFile, counters);
  const started = new Date().toISOString();
  const record = (): RunRecord => ({
    pid: Deno.pid,
    started_at: started,
    heartbeat_at: new Date().toISOString(),
    version,
  });
  await writeJson(runFile, record());
  const timer = setInterval(() => writeJson(runFile, record()).catch(() => {}), HEARTBEAT_MS);
  Deno.unrefTimer(timer);
  return {
    dir,
    previous,
    counters,
    async markClean() {
      clearInterval(timer);
      await Deno.remove(runFile).catch(() => {});
    },
  };
}

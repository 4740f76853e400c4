/**
 * Structured events as JSON lines on stdout (journald and `jq` friendly).
 *
 * Each line is one event: {"@timestamp", "level", "message": "<event name>", "logger", ...fields}.
 * Event names are dotted nouns (`tunnel.open`, `auth.denied`); fields never hold secrets.
 */
import {
  configureSync,
  getJsonLinesFormatter,
  getLogger,
  type LogLevel,
  resetSync,
} from "@logtape/logtape";

export const LOG_LEVELS = ["debug", "info", "warning", "error"] as const;
export type Level = typeof LOG_LEVELS[number];

export type Fields = Record<string, unknown>;

export interface EventLog {
  debug(event: string, fields?: Fields): void;
  info(event: string, fields?: Fields): void;
  warn(event: string, fields?: Fields): void;
  error(event: string, fields?: Fields): void;
}

/** Installs the JSON-lines sink once per process. Writes are synchronous so the last events
 * before a crash or exit are not lost in a buffer. */
export function setupLogging(level: Level = "info", write = (b: Uint8Array) => stdoutWrite(b)) {
  const format = getJsonLinesFormatter({ message: "template", properties: "flatten" });
  const enc = new TextEncoder();
  resetSync();
  configureSync({
    sinks: { jsonl: (record) => write(enc.encode(format(record))) },
    loggers: [
      { category: ["florete"], lowestLevel: level as LogLevel, sinks: ["jsonl"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["jsonl"] },
    ],
  });
}

function stdoutWrite(b: Uint8Array): void {
  try {
    for (let off = 0; off < b.length;) off += Deno.stdout.writeSync(b.subarray(off));
  } catch {
    // stdout closed (parent went away): logging must never take the agent down
  }
}

/** The last warnings and errors, for `flor status` ("what went wrong lately"). */
export const RECENT_PROBLEMS = 20;
const recent: Array<{ time: string; level: string; event: string } & Fields> = [];

export function recentProblems(): ReadonlyArray<Record<string, unknown>> {
  return recent;
}

function remember(level: string, event: string, fields: Fields) {
  recent.push({ time: new Date().toISOString(), level, event, ...fields });
  if (recent.length > RECENT_PROBLEMS) recent.shift();
}

/** A logger for one component (`agent`, `socks`, `quic`, ...). */
export function eventLog(component: string): EventLog {
  const l = getLogger(["florete", component]);
  return {
    debug: (e, f = {}) => l.debug(e, f),
    info: (e, f = {}) => l.info(e, f),
    warn: (e, f = {}) => {
      remember("warning", e, f);
      l.warn(e, f);
    },
    error: (e, f = {}) => {
      remember("error", e, f);
      l.error(e, f);
    },
  };
}

/**
 * Structured events as JSON lines on stdout (journald and `jq` friendly).
 *
 * Each line is one event: {"@timestamp", "level", "message": "<event name>", "logger", ...fields}.
 * Event names are dotted nouns (`tunnel.open`, `auth.denied`); fields never hold secrets.
 *
 * Warnings and errors are written at once, synchronously, so the last ones before a crash are
 * not lost in a buffer. Info and debug events (two per tunnel) are gathered and written
 * together at most LOG_FLUSH_MS later: one write per event was a third of the logging's cost
 * per CONNECT (docs/transport.md). Gathered events are written before any warning or error,
 * when the process exits (Deno.exit, the end of its event loop: the `unload` event), and on
 * an uncaught error, so only a process killed with SIGKILL can lose up to LOG_FLUSH_MS of
 * them.
 */
export const LOG_LEVELS = ["debug", "info", "warning", "error"] as const;
export type Level = typeof LOG_LEVELS[number];

export type Fields = Record<string, unknown>;

export interface EventLog {
  debug(event: string, fields?: Fields): void;
  info(event: string, fields?: Fields): void;
  warn(event: string, fields?: Fields): void;
  error(event: string, fields?: Fields): void;
}

/** How long an info or debug event may wait to be written with the next ones: long enough
 * to gather the events of several tunnels at a CONNECT every ~2 ms on loopback, short enough
 * that `journalctl -f` still looks live. */
export const LOG_FLUSH_MS = 20;
/** Gathered bytes past this are written at once, so a burst of events holds no large string. */
export const LOG_BUFFER_BYTES = 64 * 1024;

const RANK: Record<Level, number> = { debug: 0, info: 1, warning: 2, error: 3 };
const LEVEL_WORD: Record<Level, string> = {
  debug: "DEBUG",
  info: "INFO",
  warning: "WARN",
  error: "ERROR",
};

interface Sink {
  lowest: number;
  write: (b: Uint8Array) => void;
  pending: string;
  timer?: ReturnType<typeof setTimeout>;
}

let sink: Sink | undefined;
const enc = new TextEncoder();

/** Installs the JSON-lines sink once per process (again: replaces it, after writing what the
 * previous one gathered). Until then events go nowhere. */
export function setupLogging(level: Level = "info", write = (b: Uint8Array) => stdoutWrite(b)) {
  flushLog();
  if (!sink) {
    globalThis.addEventListener("unload", flushLog);
    // Runs before the process dies of the error (agent/main.ts logs it as agent.crash).
    globalThis.addEventListener("error", flushLog);
    globalThis.addEventListener("unhandledrejection", flushLog);
  }
  sink = { lowest: RANK[level], write, pending: "" };
}

/** Writes the gathered info and debug events now (exit paths call it through `unload`). */
export function flushLog(): void {
  if (!sink) return;
  clearTimeout(sink.timer);
  sink.timer = undefined;
  if (sink.pending === "") return;
  const text = sink.pending;
  sink.pending = "";
  sink.write(enc.encode(text));
}

function emit(level: Level, logger: string, event: string, fields: Fields): void {
  const s = sink;
  if (!s || RANK[level] < s.lowest) return;
  const line = formatEvent(new Date().toISOString(), level, logger, event, fields);
  if (RANK[level] >= RANK.warning) {
    s.pending += line;
    flushLog();
    return;
  }
  s.pending += line;
  if (s.pending.length >= LOG_BUFFER_BYTES) flushLog();
  else if (s.timer === undefined) {
    s.timer = setTimeout(flushLog, LOG_FLUSH_MS);
    // A gathered event never keeps a finished process alive: `unload` writes it.
    Deno.unrefTimer(s.timer);
  }
}

/** One event as a JSON line. Fields come after the fixed keys and may not replace them
 * (as before, a field named like one sets its value in place). */
export function formatEvent(
  timestamp: string,
  level: Level,
  logger: string,
  event: string,
  fields: Fields,
): string {
  const record = { "@timestamp": timestamp, level: LEVEL_WORD[level], message: event, logger };
  Object.assign(record, fields);
  const json = plain(fields) ? JSON.stringify(record) : JSON.stringify(record, errorReplacer());
  return escapeC1(json) + "\n";
}

/** Whether every field is a string, number, boolean or null: JSON.stringify's fast path,
 * without a replacer (the fields of every per-tunnel event are). */
function plain(fields: Fields): boolean {
  for (const k in fields) {
    const v = fields[k];
    if (v !== null && typeof v === "object" || typeof v === "bigint") return false;
  }
  return true;
}

/** Errors as {name, message, stack, cause, ...own fields}; bigints as decimal strings; a
 * reference to an enclosing object as "[Circular]" instead of a thrown TypeError. */
function errorReplacer(): (this: unknown, key: string, value: unknown) => unknown {
  const sources: unknown[] = [];
  const results: unknown[] = [];
  return function (this: unknown, _key: string, value: unknown) {
    const result = errorOrBigint(value);
    if (typeof result !== "object" || result === null) return result;
    while (results.length > 0 && results[results.length - 1] !== this) {
      results.pop();
      sources.pop();
    }
    for (let i = 0; i < results.length; i++) {
      if (results[i] === result || sources[i] === value) return "[Circular]";
    }
    sources.push(value);
    results.push(result);
    return result;
  };
}

function errorOrBigint(value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (!(value instanceof Error)) return value;
  const out: Record<string, unknown> = { name: value.name, message: value.message };
  if (typeof value.stack === "string") out.stack = value.stack;
  if (value.cause !== undefined) out.cause = value.cause;
  if (value instanceof AggregateError) out.errors = value.errors;
  for (const k of Object.keys(value)) if (!(k in out)) out[k] = (value as never)[k];
  return out;
}

/** C1 control characters (U+007F-U+009F) spelled as \u escapes, so a field cannot carry a
 * terminal control sequence to whoever reads the log; JSON.parse gives them back unchanged. */
function escapeC1(json: string): string {
  return json.replace(
    /[\u007f-\u009f]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
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
  const logger = `florete.${component}`;
  return {
    debug: (e, f = {}) => emit("debug", logger, e, f),
    info: (e, f = {}) => emit("info", logger, e, f),
    warn: (e, f = {}) => {
      remember("warning", e, f);
      emit("warning", logger, e, f);
    },
    error: (e, f = {}) => {
      remember("error", e, f);
      emit("error", logger, e, f);
    },
  };
}

/**
 * The vocabulary of configuration errors, shared by cluster.yaml and flor.yaml.
 *
 * Every problem names the file, the 1-based line and column, the key path and what to
 * do about it, so an operator can jump straight to `cluster.yaml:14:5` in an editor.
 * Parsing is pure: text in, value or problems out; reading the file is the caller's job.
 */

import * as YAML from "yaml";
import { z } from "zod";

export interface ConfigProblem {
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
  /** Dotted key path like `services.web.allow[2]`; "" for the whole file. */
  path: string;
  message: string;
  severity: "error" | "warning";
}

export type ConfigPath = readonly (string | number)[];

/**
 * A zod transform from text to the value `parse` makes of it, reporting the message `parse`
 * throws as the field's problem: `text.transform(parsedBy(parseHostPort))`. The parsers say
 * what is wrong and how to write it; a schema must not replace that with a vaguer message.
 */
export function parsedBy<T>(parse: (text: string) => T) {
  return function parsed(text: string, ctx: z.RefinementCtx): T {
    try {
      return parse(text);
    } catch (e) {
      ctx.addIssue({ code: "custom", message: (e as Error).message });
      return z.NEVER;
    }
  };
}

/** `cluster.yaml:14:5: services.web.node: node 'n3' is not defined; ...` */
export function formatProblem(p: ConfigProblem): string {
  const warning = p.severity === "warning" ? "warning: " : "";
  const path = p.path === "" ? "" : `${p.path}: `;
  return `${p.file}:${p.line}:${p.column}: ${warning}${path}${p.message}`;
}

export class ConfigError extends Error {
  override name = "ConfigError";
  readonly problems: ConfigProblem[];

  constructor(problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join("\n"));
    this.problems = problems;
  }
}

/** `["services", "web", "allow", 2]` → `services.web.allow[2]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else out += out === "" ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

/**
 * Maps a path like ["services","web","node"] to the 1-based line/column of that node in a
 * parsed yaml Document (nearest existing ancestor when the key is missing).
 *
 * A map entry is located at its key (`node:` rather than the value after it), so a block
 * value such as a whole service points at the line that names it.
 */
export function locate(
  doc: YAML.Document,
  lineCounter: YAML.LineCounter,
  path: ConfigPath,
): { line: number; column: number } {
  let node: unknown = doc.contents;
  let offset = _start(node) ?? 0;
  for (const seg of path) {
    if (YAML.isAlias(node)) node = node.resolve(doc);
    if (YAML.isMap(node)) {
      const pair = node.items.find((p) => _keyText(p.key) === String(seg));
      if (pair === undefined) break;
      offset = _start(pair.key) ?? _start(pair.value) ?? offset;
      node = pair.value;
    } else if (YAML.isSeq(node) && typeof seg === "number" && seg < node.items.length) {
      node = node.items[seg];
      offset = _start(node) ?? offset;
    } else {
      break;
    }
  }
  const { line, col } = lineCounter.linePos(offset);
  return { line, column: col };
}

/** Builds a problem located at `path` in `doc`. */
export function problemAt(
  file: string,
  doc: YAML.Document,
  lineCounter: YAML.LineCounter,
  path: ConfigPath,
  message: string,
  severity: ConfigProblem["severity"] = "error",
): ConfigProblem {
  return { file, ...locate(doc, lineCounter, path), path: formatPath(path), message, severity };
}

/** The candidate a typo most likely meant, if one is close enough to suggest. */
export function closestMatch(word: string, candidates: Iterable<string>): string | undefined {
  // Two-letter names (n1, n2, n3) are all one edit apart: suggest for them only on a case slip.
  const limit = word.length <= 2 ? 0 : word.length <= 5 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    if (c === word) continue;
    const d = c.toLowerCase() === word.toLowerCase() ? 0 : _editDistance(word, c);
    if (d <= limit && d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/**
 * Parses YAML text, validates it with a zod schema, and returns the value or every problem
 * with its location: YAML syntax errors (including duplicate keys, reported as
 * "duplicate name 'x'"), then schema issues, each mapped to file:line.
 *
 * `value` is set only when there is no error (warnings allowed).
 */
export function parseYamlWithSchema<T>(
  text: string,
  file: string,
  schema: z.ZodType<T>,
): { value?: T; doc?: YAML.Document; lineCounter: YAML.LineCounter; problems: ConfigProblem[] } {
  const lineCounter = new YAML.LineCounter();
  const doc = YAML.parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const problems: ConfigProblem[] = [];

  for (const e of doc.errors) problems.push(_yamlProblem(e, "error", text, file, doc, lineCounter));
  for (const w of doc.warnings) {
    problems.push(_yamlProblem(w, "warning", text, file, doc, lineCounter));
  }
  // A duplicate key leaves a sound document; any other syntax error would make the schema
  // report a cascade of follow-on mistakes, so stop at the syntax.
  if (doc.errors.some((e) => e.code !== "DUPLICATE_KEY")) return { doc, lineCounter, problems };

  let data: unknown;
  try {
    data = doc.toJS();
  } catch (e) {
    // e.g. an alias to an anchor defined later, or too many aliases (a "billion laughs").
    const message = `${e instanceof Error ? e.message : String(e)}; define each &anchor ` +
      "before its *alias, or write the value out";
    problems.push({ file, line: 1, column: 1, path: "", message, severity: "error" });
    return { doc, lineCounter, problems };
  }

  const allowedKeys = new Map<string, string[]>();
  const result = schema.safeParse(data, { error: (iss) => _operatorMessage(iss, allowedKeys) });
  if (!result.success) {
    const found: ConfigProblem[] = [];
    for (const issue of result.error.issues) {
      const path = issue.path.map((seg) => typeof seg === "number" ? seg : String(seg));
      if (issue.code === "unrecognized_keys") {
        const allowed = allowedKeys.get(formatPath(path)) ?? [];
        const where = path.length === 0 ? "at the top level" : `in ${formatPath(path)}`;
        for (const key of issue.keys) {
          const close = closestMatch(key, allowed);
          const fix = close !== undefined
            ? `did you mean '${close}'?`
            : allowed.length > 0
            ? `allowed keys are ${allowed.join(", ")}`
            : "remove it";
          const message = `unknown key '${key}' ${where}; ${fix}`;
          found.push(problemAt(file, doc, lineCounter, [...path, key], message));
        }
      } else {
        found.push(problemAt(file, doc, lineCounter, path, issue.message));
      }
    }
    problems.push(...sortProblems(found));
  }

  if (problems.some((p) => p.severity === "error") || !result.success) {
    return { doc, lineCounter, problems };
  }
  return { value: result.data, doc, lineCounter, problems };
}

/** Orders problems by position, keeping the original order on ties. */
export function sortProblems(problems: ConfigProblem[]): ConfigProblem[] {
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => a.p.line - b.p.line || a.p.column - b.p.column || a.i - b.i)
    .map(({ p }) => p);
}

function _yamlProblem(
  e: YAML.YAMLError,
  severity: ConfigProblem["severity"],
  text: string,
  file: string,
  doc: YAML.Document,
  lineCounter: YAML.LineCounter,
): ConfigProblem {
  const { line, col } = lineCounter.linePos(e.pos[0]);
  const path = _pathAt(doc.contents, e.pos[0]);
  let message: string;
  if (e.code === "DUPLICATE_KEY") {
    const name = String(path.at(-1) ?? text.slice(e.pos[0], e.pos[1]));
    const parent = path.slice(0, -1);
    const first = locate(doc, lineCounter, [...parent, name]).line;
    const where = parent.length === 0 ? "at the top level" : `in ${formatPath(parent)}`;
    message = `duplicate name '${name}' ${where} (first defined on line ${first}); ` +
      "rename or remove one of them";
    return { file, line, column: col, path: formatPath(parent), message, severity };
  }
  const lineText = text.slice(lineCounter.lineStarts[line - 1] ?? 0).split("\n", 1)[0];
  message = `YAML syntax: ${e.message}; ${_syntaxHint(e.code, lineText)}`;
  return { file, line, column: col, path: formatPath(path), message, severity };
}

function _syntaxHint(code: YAML.ErrorCode, lineText: string): string {
  // `endpoint: [::1]:7101` starts a YAML list, the commonest way to break these files.
  if (/:\s*\[[0-9a-fA-F:.]*\]:\d/.test(lineText)) {
    return 'put values that start with "[" in quotes, e.g. endpoint: "[::1]:7101"';
  }
  switch (code) {
    case "TAB_AS_INDENT":
      return "indent with spaces, not tabs";
    case "MULTIPLE_DOCS":
      return "keep one document per file: remove the '---' separator and what follows";
    case "BAD_INDENT":
    case "MISSING_CHAR":
      return "check the indentation and that every '[', '{' and quote is closed";
    default:
      return "check the indentation, the ':' after each key and the quoting of values";
  }
}

/** The key path of the deepest node that contains `offset`. */
function _pathAt(root: unknown, offset: number): (string | number)[] {
  const path: (string | number)[] = [];
  let node = root;
  for (;;) {
    if (YAML.isMap(node)) {
      const pair = node.items.find((p) => _contains(p.key, offset) || _contains(p.value, offset));
      if (pair === undefined) return path;
      path.push(_keyText(pair.key) ?? "?");
      if (_contains(pair.key, offset)) return path;
      node = pair.value;
    } else if (YAML.isSeq(node)) {
      const i = node.items.findIndex((item) => _contains(item, offset));
      if (i < 0) return path;
      path.push(i);
      node = node.items[i];
    } else {
      return path;
    }
  }
}

function _contains(node: unknown, offset: number): boolean {
  const range = YAML.isNode(node) ? node.range : undefined;
  return range != null && range[0] <= offset && offset < Math.max(range[2], range[0] + 1);
}

function _start(node: unknown): number | undefined {
  return YAML.isNode(node) && node.range != null ? node.range[0] : undefined;
}

function _keyText(key: unknown): string | undefined {
  if (YAML.isScalar(key)) return String(key.value);
  return typeof key === "string" || typeof key === "number" ? String(key) : undefined;
}

const _EXPECTED: Record<string, string> = {
  string: "text",
  number: "a number",
  int: "a whole number",
  boolean: "true or false",
  array: "a list (one '- item' per line, or [a, b])",
  tuple: "a list",
  object: "a map of 'key: value' lines",
  record: "a map of 'name: settings' lines",
  null: "empty",
};

/** Rewrites zod's default messages into operator language; schemas override per field. */
function _operatorMessage(
  iss: z.core.$ZodRawIssue,
  allowedKeys: Map<string, string[]>,
): string | undefined {
  switch (iss.code) {
    case "invalid_type":
      if (iss.input === undefined) return "is required";
      return `must be ${_EXPECTED[iss.expected] ?? iss.expected}, not ${_describe(iss.input)}`;
    case "too_small":
      if (iss.origin === "string") {
        return Number(iss.minimum) <= 1 ? "must not be empty" : `needs ${iss.minimum}+ characters`;
      }
      if (iss.origin === "array") return `must list at least ${iss.minimum} entries`;
      return `must be at least ${iss.minimum}`;
    case "too_big":
      if (iss.origin === "string") return `must be at most ${iss.maximum} characters`;
      if (iss.origin === "array") return `must list at most ${iss.maximum} entries`;
      return `must be at most ${iss.maximum}`;
    case "invalid_value":
      return `must be one of ${iss.values.map((v) => `'${String(v)}'`).join(", ")}`;
    case "invalid_key":
      return iss.issues.map((i) => i.message).join("; ");
    case "unrecognized_keys": {
      // Remember what the map accepts, to suggest the key a typo meant.
      const shape = (iss.inst as { _zod?: { def?: { shape?: object } } } | undefined)?._zod?.def
        ?.shape;
      allowedKeys.set(formatPath(iss.path ?? []), shape ? Object.keys(shape) : []);
      return "unknown key";
    }
    case "invalid_union":
      return `${_describe(iss.input)} is not one of the accepted forms`;
    case "invalid_format":
      return `has the wrong format (${iss.format})`;
    default:
      return undefined;
  }
}

function _describe(v: unknown): string {
  if (v === null) return "an empty value";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a map";
  if (typeof v === "string") return `the text '${v}'`;
  return `${typeof v === "number" ? "the number" : typeof v} ${String(v)}`;
}

/** Optimal string alignment distance: like Levenshtein, but a swap of neighbours costs 1. */
function _editDistance(a: string, b: string): number {
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) d.push([i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

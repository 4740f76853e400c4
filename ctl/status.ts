/**
 * `florctl status [--json]`: one row per node in cluster.yaml, asked over the mesh as the
 * operator — reachable or why not, RTT, version, config hash against what cluster.yaml says
 * it should be, uptime, unclean restarts, traffic, auth failures, memory. Exit 1 when a
 * node is unhealthy (unreachable, config drift, or its last exit was a crash).
 *
 * `probeNodes` is the shell (sockets, timers); the verdicts and the table are pure
 * functions of what it returns, so they are tested without a cluster (`nodeRow`,
 * `formatStatusTable`). `florctl doctor` reuses the probes.
 */
import { CloseCode } from "../lib/protocol.ts";
import { PeerError, type PeerErrorCode, raceSignal } from "../lib/quic_client.ts";
import { formatHostPort } from "../lib/host_port.ts";
import { expectedConfigHash } from "./bundle.ts";
import { type ClusterDir, CtlError, openClusterDir } from "./cluster_dir.ts";
import { dialNode, loadOperator, type NodeStatus, requestStatus } from "./operator.ts";

/** Per-node limit for handshake + auth + status reply. A healthy node answers in one RTT
 * after a 2.5 s-bounded handshake (CONNECT_TIMEOUT_MS); a row that waits longer only delays
 * the whole table, whose nodes are asked in parallel. */
export const STATUS_TIMEOUT_MS = 4_000;

/** Why a node gave no status: the dial's PeerError codes, plus the status request's own. */
export type ProbeErrorCode =
  | PeerErrorCode
  /** Handshake and auth done, but no status reply within STATUS_TIMEOUT_MS. */
  | "timeout"
  /** The node answered the status request with a refusal (e.g. its map has no such admin). */
  | "refused"
  /** Anything else (a malformed reply). */
  | "error";

/** What asking one node produced. */
export interface NodeProbe {
  node: string;
  endpoint: string;
  status?: NodeStatus;
  /** Status request to reply on the established connection (not the handshake), ms. */
  rttMs?: number;
  /** Local wall clock when the status request was sent (clock-skew estimate). */
  sentAtMs?: number;
  error?: { code: ProbeErrorCode; message: string };
}

export interface StatusRow {
  node: string;
  reachable: boolean;
  error?: string;
  error_code?: ProbeErrorCode;
  rtt_ms?: number;
  version?: string;
  config_hash?: string;
  expected_config_hash: string;
  config_ok?: boolean;
  uptime_s?: number;
  unclean_restarts?: number;
  previous_exit?: string;
  tunnels_open?: number;
  bytes_in?: number;
  bytes_out?: number;
  auth_failures_last_hour?: number;
  rss_bytes?: number;
  healthy: boolean;
  /** Why the node is unhealthy; empty exactly when `healthy`. */
  problems: string[];
}

export interface StatusReport {
  nodes: StatusRow[];
  healthy: boolean;
}

// ---- pure: verdicts and formatting ----

function _num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

function _str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** The health rules: unreachable, config drift, or a last exit that was a crash. */
export function healthProblems(
  r: Omit<StatusRow, "healthy" | "problems">,
): string[] {
  if (!r.reachable) {
    return [`${r.error ?? "no answer"} (\`florctl doctor\` diagnoses it)`];
  }
  const out: string[] = [];
  if (r.config_ok === false) {
    out.push(
      `runs config ${r.config_hash}, cluster.yaml says ${r.expected_config_hash}: ` +
        `push it with \`florctl deploy --node ${r.node}\``,
    );
  }
  if ((r.unclean_restarts ?? 0) > 0 && r.previous_exit === "unclean") {
    out.push(
      `restarted after an unclean exit (${r.unclean_restarts} unclean restart(s) so far): ` +
        `read the end of its log on the node for the crash`,
    );
  }
  return out;
}

/** One node's row from its probe and the config hash cluster.yaml implies. */
export function nodeRow(p: NodeProbe, expected: string): StatusRow {
  const s = p.status;
  let base: Omit<StatusRow, "healthy" | "problems">;
  if (!s) {
    base = {
      node: p.node,
      reachable: false,
      error: p.error ? `${p.error.code}: ${p.error.message}` : "no answer",
      error_code: p.error?.code ?? "error",
      expected_config_hash: expected,
    };
  } else {
    const hash = _str(s.config_hash);
    base = {
      node: p.node,
      reachable: true,
      rtt_ms: p.rttMs,
      version: _str(s.version),
      config_hash: hash,
      expected_config_hash: expected,
      config_ok: hash === expected,
      uptime_s: _num(s.uptime_s),
      unclean_restarts: _num(s.unclean_restarts),
      previous_exit: _str(s.previous_exit),
      tunnels_open: _num(s.tunnels_open),
      bytes_in: _num(s.bytes_in),
      bytes_out: _num(s.bytes_out),
      auth_failures_last_hour: _num(s.auth_failures_last_hour),
      rss_bytes: _num(s.rss_bytes),
    };
  }
  const problems = healthProblems(base);
  return { ...base, healthy: problems.length === 0, problems };
}

export function statusReport(rows: StatusRow[]): StatusReport {
  return { nodes: rows, healthy: rows.every((r) => r.healthy) };
}

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** 93784 → "1d2h", 3725 → "1h2m", 65 → "1m5s", 7 → "7s". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d${h}h`;
  if (h) return `${h}h${m}m`;
  if (m) return `${m}m${s % 60}s`;
  return `${s}s`;
}

/** Columns padded to their widest cell; `right` marks numeric columns. */
export function formatTable(header: string[], rows: string[][], right: boolean[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])).join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/** The human form: the table, then one line per problem. */
export function formatStatusTable(report: StatusReport): string {
  const dash = "-";
  const rows = report.nodes.map((r) => {
    if (!r.reachable) {
      return [r.node, "DOWN", dash, dash, dash, dash, dash, dash, dash, dash, dash, dash];
    }
    const num = (v: number | undefined, f: (n: number) => string = String) =>
      v === undefined ? "?" : f(v);
    return [
      r.node,
      r.healthy ? "up" : "UNHEALTHY",
      num(r.rtt_ms, (v) => `${v.toFixed(1)} ms`),
      r.version ?? "?",
      r.config_ok ? `${r.config_hash} ok` : `${r.config_hash ?? "?"} MISMATCH`,
      num(r.uptime_s, formatDuration),
      num(r.unclean_restarts),
      num(r.tunnels_open),
      num(r.bytes_in, formatBytes),
      num(r.bytes_out, formatBytes),
      num(r.auth_failures_last_hour),
      num(r.rss_bytes, formatBytes),
    ];
  });
  const table = formatTable(
    [
      "NODE",
      "STATE",
      "RTT",
      "VERSION",
      "CONFIG",
      "UPTIME",
      "UNCLEAN",
      "TUNNELS",
      "IN",
      "OUT",
      "AUTH-FAIL/H",
      "RSS",
    ],
    rows,
    [false, false, true, false, false, true, true, true, true, true, true, true],
  );
  if (!report.nodes.length) return "no nodes in cluster.yaml: add one with `florctl node add`";
  const problems = report.nodes.flatMap((r) => r.problems.map((p) => `${r.node}: ${p}`));
  const summary = report.healthy
    ? `all ${report.nodes.length} node(s) healthy`
    : `${
      report.nodes.filter((r) => !r.healthy).length
    } of ${report.nodes.length} node(s) unhealthy`;
  return [table, "", ...problems, summary].join("\n");
}

// ---- the shell: asking the nodes ----

/** Asks every node in cluster.yaml for its status in parallel, as the operator. Throws
 * CtlError when there is no usable operator identity (no admin, bad --as, no CA). */
export async function probeNodes(
  cd: ClusterDir,
  as?: string,
  timeoutMs = STATUS_TIMEOUT_MS,
): Promise<NodeProbe[]> {
  const op = await loadOperator(cd, as);
  return await Promise.all(
    Object.entries(cd.cluster.nodes).map(([node, entry]) =>
      _probe(node, formatHostPort(entry.endpoint), timeoutMs, () => dialNode(cd, op, node))
    ),
  );
}

async function _probe(
  node: string,
  endpoint: string,
  timeoutMs: number,
  dial: () => Promise<Deno.QuicConn>,
): Promise<NodeProbe> {
  const signal = AbortSignal.timeout(timeoutMs);
  const close = (c: Deno.QuicConn) => {
    try {
      c.close({ closeCode: CloseCode.NORMAL, reason: "done" });
    } catch {
      // closed already
    }
  };
  let conn: Deno.QuicConn | undefined;
  try {
    conn = await raceSignal(dial(), signal, close);
    const { status, rttMs, sentAtMs } = await requestStatus(conn, node, signal);
    return { node, endpoint, status, rttMs, sentAtMs };
  } catch (e) {
    if (e instanceof PeerError) {
      return { node, endpoint, error: { code: e.code, message: e.message } };
    }
    if (e instanceof CtlError) {
      return { node, endpoint, error: { code: "refused", message: e.message } };
    }
    if (signal.aborted) {
      return {
        node,
        endpoint,
        error: {
          code: "timeout",
          message: `${node} (${endpoint}) accepted the connection but sent no status within ` +
            `${timeoutMs / 1000} s`,
        },
      };
    }
    return {
      node,
      endpoint,
      error: { code: "error", message: `${node}: ${(e as Error).message}` },
    };
  } finally {
    if (conn) close(conn);
  }
}

/** Rows for every node: its probe against the hash cluster.yaml implies for it. */
export async function statusRows(cd: ClusterDir, probes: NodeProbe[]): Promise<StatusRow[]> {
  return await Promise.all(
    probes.map(async (p) => nodeRow(p, await expectedConfigHash(cd, p.node))),
  );
}

export interface StatusOptions {
  dir: string;
  json?: boolean;
  as?: string;
}

export async function status(o: StatusOptions): Promise<number> {
  const cd = await openClusterDir(o.dir);
  const report = statusReport(await statusRows(cd, await probeNodes(cd, o.as)));
  console.log(o.json ? JSON.stringify(report, null, 2) : formatStatusTable(report));
  return report.healthy ? 0 : 1;
}

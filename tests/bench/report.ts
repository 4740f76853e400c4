/**
 * The bench's numbers, without I/O: what one path measured on one link in one repeat,
 * the side-by-side table (ranges over repeats, Florete/ssh ratios) and the targets
 * as pass/fail lines. The targets are printed, never asserted: a benchmark on a shared
 * machine is not a test.
 */
import type { PathName } from "./bench_options.ts";

export interface PathRun {
  link: string;
  repeat: number;
  path: PathName;
  /** CONNECT → first echoed byte on the proxy as started (flor: no QUIC connection yet). */
  coldMs: number;
  latencyMedianMs: number;
  latencyP99Ms: number;
  flowBytes: number;
  flowMBps: number;
  concurrent: { n: number; bytesEach: number; seconds: number; completed: number };
  /** Peak RSS (VmHWM) of each proxy process, MB: "user agent", "node agent", "ssh", "sshd". */
  peakRssMb: Record<string, number>;
  /** UDP receive-buffer overflows in the server's namespace during this path's run. */
  udpRcvbufErrors: number;
}

export interface LinkInfo {
  name: string;
  congestion: { tcpClient: string; tcpServer: string; flor: string };
}

export interface TargetLine {
  pass: boolean | undefined;
  text: string;
}

/** Deno's own QUIC between two processes on this machine (issue 10), MB/s. */
export const QUIC_CEILING_MBPS = 280;

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** "3.1" for one value, "3.1-3.4" for a range; digits chosen for the magnitude unless given. */
export function range(values: number[], digits?: number): string {
  const ok = values.filter((v) => Number.isFinite(v));
  if (ok.length === 0) return "-";
  const lo = Math.min(...ok);
  const hi = Math.max(...ok);
  const f = (v: number) =>
    digits !== undefined
      ? v.toFixed(digits)
      : Number.isInteger(v) || v >= 100
      ? v.toFixed(0)
      : v >= 10
      ? v.toFixed(1)
      : v.toFixed(2);
  return f(lo) === f(hi) ? f(lo) : `${f(lo)}-${f(hi)}`;
}

function _runs(runs: PathRun[], link: string, path: PathName): PathRun[] {
  return runs.filter((r) => r.link === link && r.path === path);
}

/** Per repeat, flor's value over ssh's (or undefined where either is missing). */
export function ratios(
  runs: PathRun[],
  link: string,
  pick: (r: PathRun) => number,
): number[] {
  const out: number[] = [];
  for (const f of _runs(runs, link, "flor")) {
    const s = _runs(runs, link, "ssh").find((r) => r.repeat === f.repeat);
    if (s) out.push(pick(f) / pick(s));
  }
  return out;
}

function _concurrentCell(r: PathRun): number {
  // An unfinished run is shown as its time with a "+" by the table; its value is a floor.
  return r.concurrent.seconds;
}

export function formatTable(links: LinkInfo[], runs: PathRun[]): string {
  const header = [
    "link",
    "path",
    "one flow MB/s",
    "N × size s",
    "first byte med/p99 ms",
    "cold ms",
    "peak RSS MB",
    "UDP overflows",
  ];
  const rows: string[][] = [header];
  for (const l of links) {
    for (const path of ["direct", "ssh", "flor"] as const) {
      const rs = _runs(runs, l.name, path);
      if (rs.length === 0) continue;
      const c = rs[0].concurrent;
      const unfinished = rs.some((r) => r.concurrent.completed < r.concurrent.n);
      const rss = Object.keys(rs[0].peakRssMb).map((k) =>
        `${k} ${range(rs.map((r) => r.peakRssMb[k]))}`
      ).join(", ");
      rows.push([
        l.name,
        path === "ssh" ? "ssh -D" : path === "flor" ? "Florete" : "direct TCP",
        range(rs.map((r) => r.flowMBps)),
        `${c.n} × ${_size(c.bytesEach)}: ${range(rs.map(_concurrentCell))}${unfinished ? "+" : ""}`,
        `${range(rs.map((r) => r.latencyMedianMs))} / ${range(rs.map((r) => r.latencyP99Ms))}`,
        range(rs.map((r) => r.coldMs)),
        rss || "-",
        path === "flor" ? range(rs.map((r) => r.udpRcvbufErrors)) : "-",
      ]);
    }
    const flow = ratios(runs, l.name, (r) => r.flowMBps);
    if (flow.length > 0) {
      rows.push([
        l.name,
        "Florete/ssh",
        range(flow, 2),
        range(ratios(runs, l.name, _concurrentCell), 2),
        `${range(ratios(runs, l.name, (r) => r.latencyMedianMs), 2)} / ${
          range(ratios(runs, l.name, (r) => r.latencyP99Ms), 2)
        }`,
        range(ratios(runs, l.name, (r) => r.coldMs), 2),
        "",
        "",
      ]);
    }
  }
  const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) => "| " + r.map((c, i) => c.padEnd(widths[i])).join(" | ") + " |";
  return [line(rows[0]), line(widths.map((w) => "-".repeat(w))), ...rows.slice(1).map(line)]
    .join("\n");
}

function _size(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${+(bytes / 1024 / 1024).toFixed(2)} MiB` : `${bytes / 1024} KiB`;
}

/** The targets, for the links that were measured; undefined pass: not measured. */
export function evaluateTargets(runs: PathRun[]): TargetLine[] {
  const out: TargetLine[] = [];
  const check = (
    label: string,
    values: number[],
    ok: (v: number) => boolean,
    digits?: number,
  ) => {
    out.push({
      pass: values.length === 0 ? undefined : values.every(ok),
      text: `${label}: ${values.length === 0 ? "not measured" : range(values, digits)}`,
    });
  };
  for (const [link, flowMin] of [["40ms/100mbit/0%", 0.95], ["40ms/100mbit/1%", 0.9]] as const) {
    if (!runs.some((r) => r.link === link)) continue;
    check(
      `${link}: one flow Florete/ssh ≥ ${flowMin}`,
      ratios(runs, link, (r) => r.flowMBps),
      (v) => v >= flowMin,
      2,
    );
    check(
      `${link}: N × 1 MiB time Florete/ssh ≤ 1.0`,
      ratios(runs, link, _concurrentCell),
      (v) => v <= 1.0,
      2,
    );
    check(
      `${link}: node UDP receive overflows = 0`,
      _runs(runs, link, "flor").map((r) => r.udpRcvbufErrors),
      (v) => v === 0,
    );
  }
  if (runs.some((r) => r.link === "loopback")) {
    check(
      "loopback: N × 1 MiB time Florete/ssh ≤ 1.5",
      ratios(runs, "loopback", _concurrentCell),
      (v) => v <= 1.5,
      2,
    );
    check(
      "loopback: Florete CONNECT → first byte median ≤ 1.2 ms",
      _runs(runs, "loopback", "flor").map((r) => r.latencyMedianMs),
      (v) => v <= 1.2,
    );
    const flor = _runs(runs, "loopback", "flor");
    const tunnels = Math.min(...flor.map((r) => r.concurrent.n));
    check(
      `loopback: peak RSS per agent ≤ 120 MB (${tunnels} concurrent tunnels)`,
      flor.flatMap((r) => Object.values(r.peakRssMb)),
      (v) => v <= 120,
    );
    const flow = flor.map((r) => r.flowMBps);
    out.push({
      pass: undefined,
      text: `loopback: one flow ${range(flow)} MB/s = ${
        range(flow.map((v) => v / QUIC_CEILING_MBPS), 2)
      } × Deno's QUIC ceiling (~${QUIC_CEILING_MBPS} MB/s)`,
    });
  }
  return out;
}

export function formatTargets(lines: TargetLine[]): string {
  return lines.map((l) => `${l.pass === undefined ? "info" : l.pass ? "PASS" : "FAIL"}  ${l.text}`)
    .join("\n");
}

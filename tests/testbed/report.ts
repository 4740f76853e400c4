/** The report as markdown, for a person: the verdict first, then each fault with what was
 * measured against its bound, requests, and each agent's memory and descriptors. Pure. */
import type { Report } from "./model.ts";

export function reportMarkdown(r: Report, svgFile: string): string {
  const s = r.shape;
  const lines = [
    `# Testbed run ${r.started_at}: ${r.verdict.toUpperCase()}`,
    "",
    `${s.nodes} nodes, ${s.users} users, ${s.services} services, ${s.minutes} min, WAN ${s.wan}.`,
    "",
  ];
  if (r.reasons.length > 0) {
    lines.push("Why it failed:", "", ...r.reasons.map((x) => `- ${x}`), "");
  }
  lines.push(`![timeline](${svgFile})`, "", "## Faults", "");
  lines.push(
    "| kind | target | started s | detected s | recovered s | bounds s (detect / recover) | ok | measured |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  );
  for (const f of r.faults) {
    lines.push(
      `| ${f.kind} | ${cell(f.target)} | ${f.started_s} | ${f.detected_s ?? "-"} | ${
        f.recovered_s ?? "-"
      } | ${f.detect_bound_s ?? "-"} / ${f.bound_s} | ${f.ok ? "yes" : "**no**"} | ${
        cell(f.notes.join("; "))
      } |`,
    );
  }
  const q = r.requests;
  lines.push(
    "",
    "## Requests",
    "",
    `${q.ok} ok, ${q.failed} failed (${q.excused} inside the fault they belong to, ` +
      `${q.failed_outside_faults} outside).`,
    "",
  );
  for (const f of r.unexcused_failures) {
    lines.push(
      `- ${f.start_s} s ${f.principal} -> ${f.service} (${f.kind}, ${f.node}): ${f.error ?? "?"}`,
    );
  }
  lines.push(
    "",
    "## Agents",
    "",
    r.load
      ? `Machine load average (1 min) over the run: mean ${r.load.mean}, peak ${r.load.max}.`
      : "Machine load average: not sampled.",
    "",
    "| agent | RSS start MB | RSS end MB | slope MB/h | fds start | fds end | fds slope /h | " +
      "loop lag p99 / max ms | processes | ok |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  );
  for (const a of r.agents) {
    const lag = a.lag_p99_ms === null ? "-" : `${a.lag_p99_ms} / ${a.lag_max_ms}`;
    lines.push(
      `| ${a.name} | ${a.rss_start_mb} | ${a.rss_end_mb} | ${a.rss_slope_mb_per_h} | ` +
        `${a.fds_start} | ${a.fds_end} | ${a.fds_slope_per_h} | ${lag} | ${a.processes} | ` +
        `${a.ok ? "yes" : "**no**"} |`,
    );
  }
  if (r.notes.length > 0) lines.push("", ...r.notes.map((x) => `- ${x}`));
  lines.push("");
  return lines.join("\n");
}

/** A table cell: a `|` would end it, a newline would end the row. */
function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

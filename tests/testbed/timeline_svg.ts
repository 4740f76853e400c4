/**
 * The run as a picture: requests per second (ok above the axis, failed in red) per
 * one-second bin, with each fault's window shaded and labelled. SVG written as text, so no
 * browser or plotting library is needed. Pure.
 */
import type { FaultOutcome, RequestRecord } from "./model.ts";

const WIDTH = 1000;
const HEIGHT = 260;
const MARGIN = { left: 50, right: 10, top: 30, bottom: 30 };

export function timelineSvg(
  requests: RequestRecord[],
  faults: FaultOutcome[],
  runSeconds: number,
): string {
  const seconds = Math.max(1, Math.ceil(runSeconds));
  const ok = new Array<number>(seconds).fill(0);
  const failed = new Array<number>(seconds).fill(0);
  for (const r of requests) {
    const bin = Math.min(seconds - 1, Math.max(0, Math.floor(r.end_s)));
    (r.ok ? ok : failed)[bin]++;
  }
  const peak = Math.max(1, ...ok.map((v, i) => v + failed[i]));
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (s: number) => MARGIN.left + (s / seconds) * plotW;
  const y = (v: number) => MARGIN.top + plotH - (v / peak) * plotH;
  const barW = Math.max(0.5, plotW / seconds - 0.5);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" ` +
    `viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="11">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
  ];
  for (const f of faults) {
    // Never recovered: shaded to the end, which is what the operator would have lived with.
    const end = f.recovered_s ?? seconds;
    const fill = f.ok ? "#fde9a9" : "#f7b2b2";
    parts.push(
      `<rect class="fault" x="${n(x(f.started_s))}" y="${MARGIN.top}" ` +
        `width="${n(Math.max(2, x(end) - x(f.started_s)))}" height="${plotH}" fill="${fill}">` +
        `<title>${esc(`${f.kind} ${f.target}: ${f.notes.join("; ")}`)}</title></rect>`,
      `<text x="${n(x(f.started_s))}" y="${MARGIN.top - 6}">${esc(f.kind)}</text>`,
    );
  }
  for (let s = 0; s < seconds; s++) {
    if (ok[s] > 0) {
      parts.push(
        `<rect x="${n(x(s))}" y="${n(y(ok[s]))}" width="${n(barW)}" ` +
          `height="${n(y(0) - y(ok[s]))}" fill="#4a7fb5"/>`,
      );
    }
    if (failed[s] > 0) {
      const top = ok[s] + failed[s];
      parts.push(
        `<rect class="failed" x="${n(x(s))}" y="${n(y(top))}" width="${n(barW)}" ` +
          `height="${n(y(ok[s]) - y(top))}" fill="#d62728"/>`,
      );
    }
  }
  parts.push(
    `<line x1="${MARGIN.left}" y1="${n(y(0))}" x2="${WIDTH - MARGIN.right}" y2="${n(y(0))}" ` +
      `stroke="black"/>`,
    `<text x="${MARGIN.left - 4}" y="${MARGIN.top + 4}" text-anchor="end">${peak}/s</text>`,
    `<text x="${MARGIN.left - 4}" y="${n(y(0))}" text-anchor="end">0</text>`,
  );
  const tick = seconds > 600 ? 300 : seconds > 120 ? 30 : 10;
  for (let s = 0; s <= seconds; s += tick) {
    parts.push(
      `<text x="${n(x(s))}" y="${HEIGHT - 10}" text-anchor="middle">${s} s</text>`,
    );
  }
  parts.push("</svg>", "");
  return parts.join("\n");
}

function n(v: number): string {
  return (Math.round(v * 10) / 10).toString();
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

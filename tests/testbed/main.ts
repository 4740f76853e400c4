/**
 * `deno task testbed`: the design partner's cluster in namespaces, installed as an
 * operator would, under real clients, with faults on a schedule, ending in a verdict
 * (exit 0 only on pass) and a report (markdown, JSON, SVG timeline).
 *
 *   deno task testbed [--nodes 4] [--users 12] [--services 16] [--minutes 8]
 *                     [--faults kill-9,partition,...] [--wan 20ms/100mbit/0%|veth]
 *                     [--report FILE.json]
 *
 * Needs root (network namespaces). Everything it creates (namespaces, processes, temp
 * dirs) is removed on every exit path, Ctrl-C included.
 */
import { parseArgs } from "node:util";
import { run, type RunOptions } from "./run.ts";

const USAGE = "usage: deno task testbed [--nodes N] [--users N] [--services N] [--minutes M] " +
  "[--faults LIST] [--wan PROFILE] [--report FILE.json]";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    nodes: { type: "string", default: "4" },
    users: { type: "string", default: "12" },
    services: { type: "string", default: "16" },
    minutes: { type: "string", default: "8" },
    faults: { type: "string" },
    wan: { type: "string", default: "20ms/100mbit/0%" },
    report: { type: "string", default: "testbed-report.json" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const int = (name: string, v: string, min: number, max: number) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    console.error(`testbed: --${name} ${v}: expected a whole number ${min}-${max}\n${USAGE}`);
    Deno.exit(2);
  }
  return n;
};
const opts: RunOptions = {
  nodes: int("nodes", values.nodes, 2, 8),
  users: int("users", values.users, 2, 40),
  services: int("services", values.services, 1, 64),
  minutes: Number(values.minutes),
  faults: values.faults?.split(",").map((s) => s.trim()).filter(Boolean),
  wan: values.wan,
  report: values.report,
};
if (!(opts.minutes > 0)) {
  console.error(`testbed: --minutes ${values.minutes}: expected a positive number\n${USAGE}`);
  Deno.exit(2);
}
let report;
try {
  report = await run(opts, (line) => console.log(`[testbed] ${line}`));
} catch (e) {
  // A refusal before anything was built (a schedule that does not fit, a bad fault name).
  console.error((e as Error).message);
  Deno.exit(2);
}
Deno.exit(report.verdict === "pass" ? 0 : 1);

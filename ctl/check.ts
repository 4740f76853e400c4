/** `florctl check`: every problem in cluster.yaml, failed policy tests included, as
 * FILE:LINE:COL: message; exit 1 on errors. */
import { checkClusterAndTests } from "../lib/policy_tests.ts";
import { formatProblem } from "../lib/config_problems.ts";
import { clusterFile } from "./cluster_dir.ts";

export async function check(dir: string): Promise<number> {
  const file = clusterFile(dir);
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    console.error(`${file}: cannot read: ${(e as Error).message}`);
    return 1;
  }
  const { problems } = checkClusterAndTests(text, file);
  for (const p of problems) console.error(formatProblem(p));
  const errors = problems.filter((p) => p.severity === "error").length;
  if (errors) {
    console.error(`${errors} error(s) in ${file}`);
    return 1;
  }
  console.log(`${file}: ok${problems.length ? ` (${problems.length} warning(s))` : ""}`);
  return 0;
}

/**
 * The operator's cluster directory: `cluster.yaml` (no secrets, meant for git) and `pki/`
 * (the CA and every issued key, mode 0600).
 *
 * Edits go through the yaml Document API so the operator's comments and key order survive,
 * and every edit is re-checked before it is written: florctl never saves a file that
 * `florctl check` would reject.
 */
import { join } from "node:path";
import YAML from "yaml";
import { checkCluster, type Cluster } from "../../lib/cluster.ts";
import { formatProblem } from "../../lib/config_problems.ts";
import { writeFileAtomic } from "../../lib/atomic_file.ts";
import { CtlError } from "./ctl_error.ts";

export const CLUSTER_FILE = "cluster.yaml";

export interface ClusterDir {
  dir: string;
  file: string;
  doc: YAML.Document;
  cluster: Cluster;
}

export function clusterFile(dir: string): string {
  return join(dir, CLUSTER_FILE);
}

async function readClusterText(dir: string): Promise<string> {
  const file = clusterFile(dir);
  try {
    return await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CtlError(
        `${file} not found: run \`florctl init <cluster> --dir ${dir}\` first, or pass --dir`,
      );
    }
    throw e;
  }
}

/** Loads and validates; a broken file stops the command with every problem listed. */
export async function openClusterDir(dir: string): Promise<ClusterDir> {
  const file = clusterFile(dir);
  const text = await readClusterText(dir);
  const check = checkCluster(text, file);
  const errors = check.problems.filter((p) => p.severity === "error");
  if (errors.length || !check.cluster) {
    throw new CtlError(
      `${file} has problems; fix them first:\n${errors.map(formatProblem).join("\n")}`,
    );
  }
  return { dir, file, doc: YAML.parseDocument(text), cluster: check.cluster };
}

/** Validates the edited document and writes it atomically; refuses edits that break it. */
export async function saveClusterDir(cd: ClusterDir): Promise<Cluster> {
  const text = cd.doc.toString({ lineWidth: 0 });
  const check = checkCluster(text, cd.file);
  const errors = check.problems.filter((p) => p.severity === "error");
  if (errors.length || !check.cluster) {
    throw new CtlError(
      `not saved, the change would make ${cd.file} invalid:\n${
        errors.map(formatProblem).join("\n")
      }`,
    );
  }
  await writeFileAtomic(cd.file, text, 0o644);
  for (const w of check.problems.filter((p) => p.severity === "warning")) {
    console.error(formatProblem(w));
  }
  return check.cluster;
}

/** Sets `section.name` to `value`, creating the section map if the file has none. */
export function setEntry(doc: YAML.Document, section: string, name: string, value: unknown) {
  let map = doc.get(section);
  if (!YAML.isMap(map)) {
    map = doc.createNode({});
    doc.set(section, map);
  }
  // Block style for sections and entries: one line per key diffs well in git.
  (map as YAML.YAMLMap).flow = false;
  const entry = doc.createNode(value) as YAML.YAMLMap;
  entry.flow = false;
  doc.setIn([section, name], entry);
}

export { writeFileAtomic };

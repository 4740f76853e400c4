/** `florctl service add <name> --node N --target HOST:PORT --allow P[,P...] [--port N]`. */
import { isValidName, NAME_RULE } from "../../lib/identity.ts";
import { entryOf } from "../../lib/cluster.ts";
import { openClusterDir, saveClusterDir, setEntry } from "../support/cluster_dir.ts";
import { CtlError } from "../support/ctl_error.ts";

export interface ServiceAddOptions {
  node: string;
  target: string;
  allow: string[];
  port?: string;
  dir: string;
}

export async function serviceAdd(name: string, o: ServiceAddOptions) {
  if (!isValidName(name)) throw new CtlError(`bad service name '${name}': ${NAME_RULE}`);
  const allow = o.allow.flatMap((a) => a.split(",")).map((a) => a.trim()).filter(Boolean);
  let port: number | undefined;
  if (o.port !== undefined) {
    port = Number(o.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new CtlError(`--port ${o.port}: use a TCP port from 1 to 65535`);
    }
  }
  const cd = await openClusterDir(o.dir);
  if (entryOf(cd.cluster.services, name)) {
    throw new CtlError(`service ${name} already exists in ${cd.file}`);
  }
  setEntry(cd.doc, "services", name, {
    node: o.node,
    target: o.target,
    ...(port ? { port } : {}),
    allow,
  });
  await saveClusterDir(cd);
  console.log(
    `added service ${name} on ${o.node} → ${o.target}, allowed: ${allow.join(", ") || "nobody"}`,
  );
}

/** `florctl gateway add <name> --listen ADDR --allow-cidr CIDR[,CIDR] [--allow-public]`. */
import { parseCidr } from "../../lib/cidr.ts";
import { isValidName, NAME_RULE } from "../../lib/identity.ts";
import { openClusterDir, saveClusterDir, setEntry } from "../support/cluster_dir.ts";
import { CtlError } from "../support/ctl_error.ts";

export interface GatewayAddOptions {
  listen: string;
  allowCidr: string[];
  allowPublic?: boolean;
  dir: string;
}

export async function gatewayAdd(name: string, o: GatewayAddOptions) {
  if (!isValidName(name)) throw new CtlError(`bad gateway name '${name}': ${NAME_RULE}`);
  const cidrs = o.allowCidr.flatMap((c) => c.split(",")).map((c) => c.trim()).filter(Boolean);
  for (const c of cidrs) {
    try {
      parseCidr(c);
    } catch (e) {
      throw new CtlError(`--allow-cidr ${c}: ${(e as Error).message}`);
    }
  }
  if (!cidrs.length) {
    throw new CtlError("--allow-cidr is required: the LAN networks clients connect from");
  }
  const cd = await openClusterDir(o.dir);
  if (Object.hasOwn(cd.cluster.gateways, name)) {
    throw new CtlError(`gateway ${name} already exists in ${cd.file}`);
  }
  setEntry(cd.doc, "gateways", name, {
    listen: o.listen,
    allow_cidr: cidrs,
    ...(o.allowPublic ? { allow_public: true } : {}),
    clients: {},
  });
  await saveClusterDir(cd);
  console.log(
    `added gateway ${name} on ${o.listen} for ${cidrs.join(", ")}; ` +
      `list gateway:${name} in the allow lists of the services its clients may use`,
  );
}

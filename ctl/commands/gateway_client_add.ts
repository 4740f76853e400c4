/**
 * `florctl gateway client add <gateway> <client> --services a,b`: a LAN device that may use
 * those services through the gateway. Its password is printed once and kept only as a salted
 * hash (pki/gateway/<gateway>.clients.yaml, delivered in the gateway's bundle).
 */
import { generatePassword, hashPassword } from "../../lib/password_hash.ts";
import { isValidName, NAME_RULE } from "../../lib/identity.ts";
import { formatHostPort } from "../../lib/host_port.ts";
import { openClusterDir, saveClusterDir } from "../support/cluster_dir.ts";
import { CtlError } from "../support/ctl_error.ts";
import { setGatewayClientHash } from "../support/pki_store.ts";

export async function gatewayClientAdd(
  gateway: string,
  client: string,
  o: { services: string[]; dir: string },
) {
  if (!isValidName(client)) throw new CtlError(`bad client name '${client}': ${NAME_RULE}`);
  const services = o.services.flatMap((s) => s.split(",")).map((s) => s.trim()).filter(Boolean);
  const cd = await openClusterDir(o.dir);
  if (!Object.hasOwn(cd.cluster.gateways, gateway)) {
    throw new CtlError(
      `no gateway ${gateway} in ${cd.file}: add it with \`florctl gateway add ${gateway} ...\``,
    );
  }
  const existing = cd.cluster.gateways[gateway].clients;
  const replacing = Object.hasOwn(existing, client);
  const entry = cd.doc.createNode({ services }) as { flow?: boolean };
  entry.flow = false;
  if (
    !cd.doc.hasIn(["gateways", gateway, "clients"]) ||
    cd.doc.getIn(["gateways", gateway, "clients"]) === null
  ) {
    cd.doc.setIn(["gateways", gateway, "clients"], cd.doc.createNode({}));
  }
  cd.doc.setIn(["gateways", gateway, "clients", client], entry);
  await saveClusterDir(cd);
  const password = generatePassword();
  await setGatewayClientHash(o.dir, gateway, client, await hashPassword(password));
  console.log(
    `${replacing ? "updated" : "added"} client ${client} of gateway ${gateway} ` +
      `(services: ${services.join(", ") || "none"})`,
  );
  console.log(`password (shown once, only its hash is kept): ${password}`);
  const listen = cd.cluster.gateways[gateway].listen;
  console.log(
    `configure the device with SOCKS5 ${listen ? formatHostPort(listen) : "<gateway>"} ` +
      `user ${client}; then \`florctl bundle gateway ${gateway}\` (or deploy it) so it knows`,
  );
}

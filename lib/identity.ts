/**
 * Principals and their SPIFFE-style identities.
 *
 * Every certificate the cluster CA issues carries exactly one URI SAN
 * `spiffe://<cluster>/<kind>/<name>`; that URI is the identity, and the
 * principal string `<kind>:<name>` is how cluster.yaml and logs name it.
 */

export const PRINCIPAL_KINDS = ["node", "user", "service", "gateway"] as const;
export type PrincipalKind = typeof PRINCIPAL_KINDS[number];

export interface Principal {
  kind: PrincipalKind;
  name: string;
}

/** Names of clusters, nodes, users, services, gateways and groups: a DNS label. */
export const NAME_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;
export const NAME_RULE =
  "use 1-63 characters: lowercase letters, digits and '-', starting with a letter";

export class IdentityError extends Error {
  override name = "IdentityError";
}

export function isValidName(name: string): boolean {
  return NAME_PATTERN.test(name) && !name.endsWith("-");
}

export function principalString(p: Principal): string {
  return `${p.kind}:${p.name}`;
}

/** Parses `user:alice`; throws IdentityError saying what is wrong. */
export function parsePrincipal(text: string): Principal {
  const i = text.indexOf(":");
  if (i < 0) {
    throw new IdentityError(
      `'${text}' is not a principal: write <kind>:<name>, kind one of ${
        PRINCIPAL_KINDS.join(", ")
      }`,
    );
  }
  const kind = text.slice(0, i);
  const name = text.slice(i + 1);
  if (!(PRINCIPAL_KINDS as readonly string[]).includes(kind)) {
    throw new IdentityError(
      `'${text}': unknown kind '${kind}', use one of ${PRINCIPAL_KINDS.join(", ")}`,
    );
  }
  if (!isValidName(name)) throw new IdentityError(`'${text}': bad name '${name}': ${NAME_RULE}`);
  return { kind: kind as PrincipalKind, name };
}

export function spiffeId(cluster: string, p: Principal): string {
  return `spiffe://${cluster}/${p.kind}/${p.name}`;
}

/** Parses a SPIFFE URI issued by this project; returns undefined for anything else. */
export function parseSpiffeId(uri: string): { cluster: string; principal: Principal } | undefined {
  const m = /^spiffe:\/\/([a-z0-9-]+)\/([a-z]+)\/([a-z0-9-]+)$/.exec(uri);
  if (!m) return undefined;
  const [, cluster, kind, name] = m;
  if (!isValidName(cluster) || !isValidName(name)) return undefined;
  if (!(PRINCIPAL_KINDS as readonly string[]).includes(kind)) return undefined;
  return { cluster, principal: { kind: kind as PrincipalKind, name } };
}

/** The DNS name a node's certificate carries and clients verify: `.internal` is never
 * issued by a public CA, so only the cluster CA can vouch for it. */
export function nodeServerName(cluster: string, node: string): string {
  return `${node}.node.${cluster}.internal`;
}

/** Canonical form of a certificate serial: lowercase hex without colons or leading zero
 * bytes, so `00:3F:A2` in cluster.yaml matches the `3fa2` a certificate reports. */
export function normalizeSerial(serial: string): string {
  return serial.replaceAll(":", "").toLowerCase().replace(/^(00)+(?=.)/, "");
}

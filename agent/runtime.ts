/**
 * Loads everything an agent runs on from its flor.yaml: the CA, the cluster map, and its
 * local identities (certificate + key, optional SOCKS password). Each identity is checked
 * against the CA the same way a peer would check it, so a broken bundle fails at start
 * with a message, not at the first tunnel.
 */
import type * as x509 from "@peculiar/x509";
import { type Cluster, loadCluster, revokedSerials } from "../lib/cluster.ts";
import { parsePrincipal, type Principal, principalString, spiffeId } from "../lib/identity.ts";
import {
  importPrivateKeyPem,
  normalizeSerial,
  parseCertificate,
  PkiError,
  verifyLeaf,
} from "../lib/pki.ts";
import YAML from "yaml";
import { configHash } from "../lib/config_hash.ts";
import type { LoadedAgentConfig } from "./config.ts";
import type { ConfigSource } from "./config_source.ts";

export interface LocalIdentity {
  principal: Principal;
  /** `kind:name`, the key of Runtime.identities. */
  id: string;
  spiffe: string;
  cert: x509.X509Certificate;
  certPem: string;
  key: CryptoKey;
  keyPem: string;
  /** RFC 1929 password local workloads use to select this identity. */
  password?: string;
  notAfter: Date;
}

/** The part of an agent's state a reload replaces as a whole. */
export interface ClusterView {
  cluster: Cluster;
  revoked: ReadonlySet<string>;
  /** The cluster map's text as read (part of the config hash). */
  text: string;
  /** The CA's signature on it (cluster.yaml.sig beside it), if the bundle has one. */
  signature?: string;
}

/** Replaced as a whole by a reload (config_source.ts), never changed in place. */
export interface Runtime {
  readonly loaded: LoadedAgentConfig;
  readonly ca: x509.X509Certificate;
  readonly caPem: string;
  readonly view: ClusterView;
  /** configHash(flor.yaml, cluster map) of what this runtime was loaded from. */
  readonly configHash: string;
  readonly identities: Map<string, LocalIdentity>;
  /** The node identity this agent serves QUIC as, if it is a node. */
  readonly node?: LocalIdentity;
  readonly defaultIdentity?: LocalIdentity;
  /** flor-gw: LAN client name → password hash. */
  readonly gatewayClients?: Map<string, string>;
  /** Local identities left out because the cluster map revokes their certificate. */
  readonly revokedIdentities: RevokedIdentity[];
}

/** What components receive: the runtime now, and a way to follow its replacements. */
export type RuntimeSource = ConfigSource<Runtime>;

/** A local identity whose certificate the map revokes: the agent runs without it (its
 * workloads get no tunnels) rather than keep the old map, in which it is not revoked. */
export interface RevokedIdentity {
  id: string;
  serial: string;
  cert: string;
}

export class BundleError extends Error {
  override name = "BundleError";
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new BundleError(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
}

export async function loadClusterView(path: string): Promise<ClusterView> {
  const text = await readText(path, "cluster map");
  const cluster = loadCluster(text, path);
  const signature = await Deno.readTextFile(`${path}.sig`).catch(() => undefined);
  return { cluster, revoked: revokedSerials(cluster), text, signature };
}

export async function loadRuntime(loaded: LoadedAgentConfig, now = new Date()): Promise<Runtime> {
  const { config, resolve } = loaded;
  const caPem = await readText(resolve(config.ca), "CA certificate");
  const ca = parseCertificate(caPem);
  const view = await loadClusterView(resolve(config.cluster_map));
  if (view.cluster.cluster !== config.cluster) {
    throw new BundleError(
      `cluster map is for '${view.cluster.cluster}' but flor.yaml says '${config.cluster}'`,
    );
  }
  const identities = new Map<string, LocalIdentity>();
  const revokedIdentities: RevokedIdentity[] = [];
  for (const spec of config.identities) {
    const principal = parsePrincipal(spec.principal);
    const id = principalString(principal);
    const certPem = await readText(resolve(spec.cert), `certificate of ${id}`);
    const keyPem = await readText(resolve(spec.key), `key of ${id}`);
    const cert = parseCertificate(certPem);
    let verified;
    try {
      verified = await verifyLeaf(cert, {
        ca,
        cluster: config.cluster,
        now,
        revoked: view.revoked,
        usage: "clientAuth",
      });
    } catch (e) {
      if (e instanceof PkiError && e.code === "revoked") {
        // Refusing the whole map here would keep the one in which everything it revokes,
        // users included, is still allowed (fail open).
        revokedIdentities.push({ id, serial: normalizeSerial(cert.serialNumber), cert: spec.cert });
        continue;
      }
      if (e instanceof PkiError) {
        throw new BundleError(
          `certificate of ${id} (${spec.cert}): ${e.message}; ask the operator for a new bundle`,
        );
      }
      throw e;
    }
    if (principalString(verified.principal) !== id) {
      throw new BundleError(`${spec.cert} is the certificate of ${verified.spiffe}, not of ${id}`);
    }
    const key = await importPrivateKeyPem(keyPem);
    await assertKeyMatches(cert, key, id);
    const password = spec.password_file
      ? (await readText(resolve(spec.password_file), `password of ${id}`)).trim()
      : undefined;
    identities.set(id, {
      principal,
      id,
      spiffe: spiffeId(config.cluster, principal),
      cert,
      certPem,
      key,
      keyPem,
      password,
      notAfter: verified.notAfter,
    });
  }
  const node = config.node
    ? identities.get(principalString({ kind: "node", name: config.node }))
    : undefined;
  let gatewayClients: Map<string, string> | undefined;
  if (config.gateway) {
    const file = resolve(config.gateway.clients_file);
    const parsed = YAML.parse(await readText(file, "gateway clients file")) ?? {};
    if (typeof parsed !== "object" || Array.isArray(parsed)) {
      throw new BundleError(`${file}: expected a map of client name → password hash`);
    }
    gatewayClients = new Map(
      Object.entries(parsed).filter((e): e is [string, string] => typeof e[1] === "string"),
    );
  }
  const def = config.socks.default_identity;
  return {
    loaded,
    ca,
    caPem,
    view,
    configHash: await configHash(loaded.text, view.text),
    identities,
    node,
    defaultIdentity: def ? identities.get(def) : undefined,
    gatewayClients,
    revokedIdentities,
  };
}

/** A bundle with a key from another issuance would fail every handshake later; say so now. */
async function assertKeyMatches(cert: x509.X509Certificate, key: CryptoKey, id: string) {
  const probe = new TextEncoder().encode("florete key check");
  const alg = { name: "ECDSA", hash: "SHA-256" };
  const sig = await crypto.subtle.sign(alg, key, probe);
  const pub = await cert.publicKey.export({ name: "ECDSA", namedCurve: "P-256" }, ["verify"]);
  if (!await crypto.subtle.verify(alg, pub, sig, probe)) {
    throw new BundleError(`the key of ${id} does not belong to its certificate`);
  }
}

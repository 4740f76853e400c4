/**
 * Bundles: everything one machine needs to run flor — flor.yaml, the CA certificate, the
 * cluster map, and its own certificates and keys (and, for a node, those of the services it
 * hosts, which open tunnels through its SOCKS5).
 *
 *   flor.yaml  ca.crt  cluster.yaml
 *   certs/<kind>-<name>.crt  keys/<kind>-<name>.key (0600)
 *   secrets/service-<name>.password (0600)
 *
 * A bundle is made in memory (makeBundle) and then written to a directory (`florctl bundle`),
 * packed into one file (`florctl enroll user`) or pushed over SSH (`enroll node`, `deploy`);
 * `status` and `doctor` compute the config hash a node should report from it.
 */
import YAML from "yaml";
import { entryOf, revokedSerials } from "../../lib/cluster.ts";
import { formatHostPort, type HostPort, isLoopback, parseHostPort } from "../../lib/host_port.ts";
import { configHash } from "../../lib/config_hash.ts";
import { type Principal, principalString } from "../../lib/identity.ts";
import { nodePaths } from "../../lib/platform.ts";
import type { ClusterDir } from "./cluster_dir.ts";
import { CtlError } from "./ctl_error.ts";
import {
  clusterMapSignature,
  describe,
  ensureCertificate,
  ensureServicePassword,
  gatewayClientsText,
  loadCa,
} from "./pki_store.ts";

/** Default listen addresses. A node's SOCKS5 (for its services' workloads) listens on
 * loopback TCP at the same port number as its QUIC endpoint, so several nodes and a user
 * agent can share one machine (the demo, tests) without clashing. */
export const USER_SOCKS_DEFAULT = "127.0.0.1:1080";
export const NODE_METRICS_DEFAULT = "127.0.0.1:9464";
export const USER_METRICS_DEFAULT = "127.0.0.1:9465";
export const GATEWAY_METRICS_DEFAULT = "127.0.0.1:9466";

export type BundleKind = "node" | "user" | "gateway";

/** The agent's configuration file in a bundle: flor-gw reads flor-gw.yaml. */
export function configFileName(kind: BundleKind): string {
  return kind === "gateway" ? "flor-gw.yaml" : "flor.yaml";
}

export interface BundleFile {
  /** Relative path inside the bundle, `/`-separated. */
  path: string;
  data: string;
  /** Keys and passwords: written 0600 in 0700 directories. */
  secret: boolean;
}

export interface Bundle {
  kind: BundleKind;
  name: string;
  files: BundleFile[];
  /** What the agent will report once it runs these files (config_hash.ts). */
  configHash: string;
  /** Human-readable lines about certificates issued or reused. */
  notes: string[];
}

export interface ListenChoice {
  socks?: string;
  metrics?: string;
  listen?: string;
  /** Where the installed agent may write (enroll: the service's state directory). */
  stateDir?: string;
}

/** The principals whose certificates go into a bundle (a node carries its services'). */
export function bundlePrincipals(cd: ClusterDir, kind: BundleKind, name: string) {
  const cluster = cd.cluster;
  const section = kind === "node"
    ? cluster.nodes
    : kind === "user"
    ? cluster.users
    : cluster.gateways;
  const entry = entryOf<unknown>(section, name);
  if (!entry) {
    throw new CtlError(
      `${kind} ${name} is not in ${cd.file}: add it with \`florctl ${kind} add ${name} ...\``,
    );
  }
  const list: Array<{ principal: Principal; password: boolean }> = [
    { principal: { kind, name }, password: false },
  ];
  if (kind === "node") {
    for (const [svc, s] of Object.entries(cluster.services)) {
      if (s.node === name) list.push({ principal: { kind: "service", name: svc }, password: true });
    }
  }
  return list;
}

/** flor.yaml for a bundle. Pure: it names files, not their contents, so the config hash a
 * node should report can be computed without touching keys (florctl status, doctor). */
export function florYamlFor(
  cd: ClusterDir,
  kind: BundleKind,
  name: string,
  o: ListenChoice = {},
): string {
  const cluster = cd.cluster;
  const identities = bundlePrincipals(cd, kind, name).map(({ principal: p, password }) => {
    const base = `${p.kind}-${p.name}`;
    return {
      principal: principalString(p),
      cert: `certs/${base}.crt`,
      key: `keys/${base}.key`,
      ...(password ? { password_file: `secrets/${base}.password` } : {}),
    };
  });
  let config: Record<string, unknown>;
  if (kind === "node") {
    const endpoint = cluster.nodes[name].endpoint;
    config = {
      version: 1,
      cluster: cluster.cluster,
      ca: "ca.crt",
      cluster_map: "cluster.yaml",
      node: name,
      listen: {
        quic: o.listen ?? defaultQuicListen(endpoint),
        socks: o.socks ?? formatHostPort({ host: "127.0.0.1", port: endpoint.port }),
        metrics: o.metrics ?? NODE_METRICS_DEFAULT,
      },
      socks: {},
      identities,
      log: { level: "info" },
      ...(o.stateDir ? { state_dir: o.stateDir } : {}),
    };
  } else if (kind === "gateway") {
    const gwListen = cluster.gateways[name].listen;
    const listen = o.socks ?? (gwListen && formatHostPort(gwListen));
    if (!listen) {
      throw new CtlError(
        `gateway ${name} has no listen address: set gateways.${name}.listen in ${cd.file} ` +
          `or pass --socks ADDR`,
      );
    }
    config = {
      version: 1,
      cluster: cluster.cluster,
      ca: "ca.crt",
      cluster_map: "cluster.yaml",
      listen: { socks: listen, metrics: o.metrics ?? GATEWAY_METRICS_DEFAULT },
      socks: {},
      identities,
      gateway: { name, clients_file: "clients.yaml" },
      log: { level: "info" },
    };
  } else {
    config = {
      version: 1,
      cluster: cluster.cluster,
      ca: "ca.crt",
      cluster_map: "cluster.yaml",
      listen: { socks: o.socks ?? USER_SOCKS_DEFAULT, metrics: o.metrics ?? USER_METRICS_DEFAULT },
      socks: { default_identity: principalString({ kind: "user", name }) },
      identities,
      log: { level: "info" },
    };
  }
  const doc = new YAML.Document(config);
  doc.commentBefore =
    ` flor agent configuration for ${kind}:${name} in cluster ${cluster.cluster}.\n` +
    ` Generated by \`florctl\`; run it with \`${
      kind === "gateway" ? "flor-gw" : "flor"
    } run --config ${configFileName(kind)}\`.`;
  return doc.toString({ lineWidth: 0 });
}

/** The listen/state choices recorded for an enrolled node (cluster.yaml `install:`). */
export function installedChoice(cd: ClusterDir, node: string): ListenChoice {
  const install = entryOf(cd.cluster.nodes, node)?.install;
  if (!install) return {};
  return {
    socks: install.socks,
    metrics: install.metrics,
    stateDir: nodePaths(install.os ?? "linux", install.prefix).state,
  };
}

/** The config hash node `name` should report, from cluster.yaml as it is now. */
export async function expectedConfigHash(cd: ClusterDir, name: string, o?: ListenChoice) {
  const choice = o ?? installedChoice(cd, name);
  return configHash(florYamlFor(cd, "node", name, choice), await Deno.readTextFile(cd.file));
}

export async function makeBundle(
  cd: ClusterDir,
  kind: BundleKind,
  name: string,
  o: ListenChoice = {},
): Promise<Bundle> {
  for (const [flag, value] of [["--socks", o.socks], ["--metrics", o.metrics]] as const) {
    if (value !== undefined && value !== "off") checkAddr(flag, value);
  }
  if (o.listen !== undefined) checkAddr("--listen", o.listen);
  const principals = bundlePrincipals(cd, kind, name);
  const ca = await loadCa(cd.dir);
  const ensure = {
    cluster: cd.cluster.cluster,
    now: new Date(),
    revoked: revokedSerials(cd.cluster),
  };
  const files: BundleFile[] = [];
  const notes: string[] = [];
  for (const { principal: p, password } of principals) {
    const issued = await ensureCertificate(cd.dir, ca, p, ensure);
    const base = `${p.kind}-${p.name}`;
    files.push({ path: `certs/${base}.crt`, data: issued.certPem, secret: false });
    files.push({ path: `keys/${base}.key`, data: issued.keyPem, secret: true });
    if (password) {
      const pw = await ensureServicePassword(cd.dir, p.name);
      files.push({ path: `secrets/${base}.password`, data: pw + "\n", secret: true });
    }
    notes.push(`${issued.issued ? "issued" : "reused"} ${describe(issued)}`);
  }
  const florYaml = florYamlFor(cd, kind, name, o);
  const clusterYaml = await Deno.readTextFile(cd.file);
  if (kind === "gateway") {
    files.push({
      path: "clients.yaml",
      data: await gatewayClientsText(cd.dir, name),
      secret: true,
    });
  }
  files.unshift(
    { path: configFileName(kind), data: florYaml, secret: false },
    { path: "ca.crt", data: ca.certPem, secret: false },
    { path: "cluster.yaml", data: clusterYaml, secret: false },
    {
      path: "cluster.yaml.sig",
      data: await clusterMapSignature(cd.dir, ca, clusterYaml),
      secret: false,
    },
  );
  return { kind, name, files, configHash: await configHash(florYaml, clusterYaml), notes };
}

function checkAddr(flag: string, value: string) {
  try {
    parseHostPort(value);
  } catch (e) {
    throw new CtlError(`${flag} ${value}: ${(e as Error).message}`);
  }
}

/** Loopback endpoints bind loopback; public ones bind all addresses of their family, since a
 * cloud VM often does not carry its public address on an interface. */
function defaultQuicListen(endpoint: HostPort): string {
  if (isLoopback(endpoint.host)) return formatHostPort(endpoint);
  const v6 = endpoint.host.includes(":");
  return formatHostPort({ host: v6 ? "::" : "0.0.0.0", port: endpoint.port });
}

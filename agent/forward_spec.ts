/**
 * Local port forwards (`flor forward [BIND:]PORT SERVICE[.flor][:PORT]`, `forwards:` in
 * flor.yaml): what the two arguments mean and whether a forward may exist. Pure: text and the
 * cluster map in, a spec or an operator message out; agent/forward_server.ts does the I/O.
 */
import { type Cluster, servicePort } from "../lib/cluster.ts";
import { formatHostPort, type HostPort, isLoopback, parseHostPort } from "../lib/host_port.ts";
import YAML from "yaml";
import { isValidName } from "../lib/identity.ts";
import { serviceFromHost } from "../lib/policy.ts";

/** One forward: a loopback TCP address whose connections are tunnelled to `service`. */
export interface ForwardSpec {
  listen: HostPort;
  service: string;
  /** The service port to ask for; undefined means the service's own port from the map. */
  port?: number;
}

/** Where a forward came from: flor.yaml (kept across restarts) or `flor forward` (until the
 * agent stops). */
export type ForwardOrigin = "config" | "runtime";

export class ForwardSpecError extends Error {
  override name = "ForwardSpecError";
}

/** Forwards bind loopback when no address is given: they lend the agent's identity. */
export const FORWARD_DEFAULT_BIND = "127.0.0.1";

function port(text: string, what: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    throw new ForwardSpecError(`'${text}' is not a ${what} port (0-65535)`);
  }
  return Number(text);
}

/**
 * `15432`, `127.0.0.1:15432`, `localhost:15432` or `[::1]:15432`. Loopback only: whoever can
 * connect to a forward speaks as this agent's identity, the same reason its SOCKS5 port is
 * loopback-only.
 */
export function parseForwardListen(text: string): HostPort {
  const t = text.trim();
  const hp = /^\d+$/.test(t) ? { host: FORWARD_DEFAULT_BIND, port: port(t, "local") } : (() => {
    try {
      return parseHostPort(t);
    } catch (e) {
      throw new ForwardSpecError(
        `'${text}': ${(e as Error).message} (a forward's local side is PORT or BIND:PORT)`,
      );
    }
  })();
  if (!isLoopback(hp.host)) {
    throw new ForwardSpecError(
      `'${text}' is not a loopback address: a forward lends this agent's identity to every ` +
        `program that connects, so it listens on 127.0.0.1 or ::1 only`,
    );
  }
  return hp;
}

/** `db`, `db.flor`, `db.<cluster>.flor`, each with an optional `:PORT`. */
export function parseForwardTarget(
  cluster: Pick<Cluster, "cluster">,
  text: string,
): { service: string; port?: number } {
  const t = text.trim().toLowerCase();
  const m = /^(.*?)(?::(\d+))?$/.exec(t)!;
  const name = m[1].endsWith(".flor") || m[1].endsWith(".flor.")
    ? serviceFromHost(cluster, m[1])
    : isValidName(m[1])
    ? m[1]
    : undefined;
  if (!name) {
    throw new ForwardSpecError(
      `'${text}' does not name a service: write SERVICE, SERVICE.flor or ` +
        `SERVICE.${cluster.cluster}.flor, optionally with :PORT`,
    );
  }
  return { service: name, ...(m[2] !== undefined ? { port: port(m[2], "service") } : {}) };
}

export function parseForward(
  cluster: Pick<Cluster, "cluster">,
  listen: string,
  target: string,
): ForwardSpec {
  return { listen: parseForwardListen(listen), ...parseForwardTarget(cluster, target) };
}

/** The port a tunnel for this forward asks for: its own, or the service's (0 when the map
 * does not know the service; the policy then answers unknown_service). */
export function forwardPort(cluster: Cluster, spec: ForwardSpec): number {
  if (spec.port !== undefined) return spec.port;
  return Object.hasOwn(cluster.services, spec.service)
    ? servicePort(cluster.services[spec.service])
    : 0;
}

/** `127.0.0.1:15432`: one forward per local address, so this is its key. */
export function forwardKey(listen: HostPort): string {
  return formatHostPort(listen);
}

/** `db.flor:5432` or `db.flor` as written back to the operator. */
export function forwardTargetText(spec: { service: string; port?: number }): string {
  return `${spec.service}.flor${spec.port !== undefined ? `:${spec.port}` : ""}`;
}

/** The flor.yaml lines that keep a runtime forward across restarts. */
export function forwardYaml(spec: ForwardSpec): string {
  const listen = forwardKey(spec.listen);
  // `[::1]:1` unquoted would be a YAML list.
  const quoted = listen.startsWith("[") ? `'${listen}'` : listen;
  return `forwards:\n  - listen: ${quoted}\n    service: ${forwardTargetText(spec)}\n`;
}

/** flor.yaml's `forwards:` as specs (agent/config.ts has already checked each one). */
export function configuredForwards(
  cluster: string,
  list: ReadonlyArray<{ listen: string; service: string }>,
): ForwardSpec[] {
  return list.map((f) => parseForward({ cluster }, f.listen, f.service));
}

/**
 * A new flor.yaml from `flor join` keeps the user's `forwards:` from the one it replaces (a
 * renewed certificate must not lose them). Text in, text out; the new file's own forwards, if
 * the operator wrote any, win.
 */
export function keepForwards(previous: string | undefined, next: string): string {
  if (previous === undefined) return next;
  let old: unknown;
  try {
    old = YAML.parse(previous)?.forwards;
  } catch {
    return next; // an unreadable old file has nothing worth keeping
  }
  if (!Array.isArray(old) || old.length === 0) return next;
  if (YAML.parse(next)?.forwards !== undefined) return next;
  const sep = next.endsWith("\n") ? "" : "\n";
  return `${next}${sep}# kept from the previous flor.yaml by flor join\n${
    YAML.stringify({ forwards: old })
  }`;
}

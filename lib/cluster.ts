/**
 * cluster.yaml: the single source of truth for a cluster.
 *
 * The zod schema is the one definition of its shape and types; `checkCluster` adds the
 * checks that need the whole file (references between sections, clashes), and reports
 * every problem with its line and a fix. Pure: text in, cluster or problems out.
 *
 * Values are parsed once, here: endpoints and targets are HostPorts, revoked and tested
 * principals are Principals, allow entries are AllowEntries. Nothing downstream re-parses
 * them (policy decides on every tunnel, so it must not parse text).
 */

import { z } from "zod";
import { isPrivateOrLoopback, parseCidr, parseIp } from "./cidr.ts";
import { parseSshTarget } from "./ssh_target.ts";
import { formatHostPort, parseHostPort, sameHostPort } from "./host_port.ts";
import {
  isValidName,
  NAME_RULE,
  normalizeSerial,
  parsePrincipal,
  type Principal,
  type PrincipalKind,
  principalString,
} from "./identity.ts";
import {
  closestMatch,
  ConfigError,
  type ConfigPath,
  type ConfigProblem,
  locate,
  parsedBy,
  parseYamlWithSchema,
  problemAt,
  sortProblems,
} from "./config_problems.ts";

/** RFC 5280 §4.1.2.2: serial numbers are at most 20 octets. */
export const MAX_SERIAL_HEX_DIGITS = 40;

// ---- schema ----

function _text(like: string, required?: string) {
  return z.string({
    error: (iss) =>
      iss.input === undefined
        ? `is required${required ? `: ${required}` : ""}`
        : Array.isArray(iss.input)
        ? `must be text like ${like}; put values that start with "[" in quotes`
        : `must be text like ${like}`,
  });
}

/** Text like `127.0.0.1:8080`, parsed once into a HostPort. */
function _hostPortField(like: string, required: string) {
  return _text(like, required).transform(parsedBy(parseHostPort));
}

const _Port = z
  .number({ error: "must be a port number like 8080 (without quotes)" })
  .int({ error: "must be a whole port number from 1 to 65535" })
  .min(1, { error: "must be a port number from 1 to 65535" })
  .max(65535, { error: "must be a port number from 1 to 65535" });

function _nameKey(kind: string) {
  return z.string().refine(isValidName, {
    error: (iss) => `bad ${kind} name '${String(iss.input)}': ${NAME_RULE}`,
  });
}

/** A map of name → entry; `users:` with nothing after it (null) or no key at all is empty. */
function _namedMap<T extends z.ZodType>(kind: string, entry: T, example: string) {
  return z
    .record(_nameKey(kind), entry, {
      error: (iss) =>
        iss.code === "invalid_type" ? `must be a map of ${kind} names, e.g. ${example}` : undefined,
    })
    .nullish()
    .transform((m) => m ?? {});
}

const _NodeSchema = z.strictObject({
  endpoint: _hostPortField(
    "127.0.0.1:7101",
    "the node's public UDP address, e.g. endpoint: 203.0.113.10:7101",
  ),
  ssh: _text("root@203.0.113.10:22").transform(parsedBy(parseSshTarget)).optional(),
  /** Written by `florctl enroll node`: where flor is installed and what supervises it, so
   * deploy knows where to push and how to reload. */
  install: z.strictObject({
    prefix: z.string({ error: "must be an absolute directory, e.g. prefix: /" }).startsWith("/", {
      error: "must be an absolute directory, e.g. prefix: /",
    }),
    init: z.enum(["systemd", "launchd", "none"], {
      error: "must be systemd, launchd or none",
    }),
    /** The node's OS as enroll found it (where files live there). */
    os: z.enum(["linux", "darwin", "windows"]).optional(),
    /** The node agent's SOCKS5 and metrics addresses, when not the defaults. */
    socks: z.string().optional(),
    metrics: z.string().optional(),
  }).optional(),
}, {
  error: (iss) =>
    iss.code === "invalid_type"
      ? "must be a map with the node's endpoint, e.g. { endpoint: 203.0.113.10:7101 }"
      : undefined,
});

const _UserSchema = z.strictObject({
  groups: z.array(_nameKey("group"), { error: "must be a list of group names, e.g. [devs, ops]" })
    .nullish()
    .transform((g) => g ?? []),
  /** `admin`: the operator; may ask nodes for their status over the mesh (florctl status,
   * enroll and deploy verification). Grants no access to services. */
  role: z.enum(["admin"], { error: "the only role is admin (the operator)" }).optional(),
}, {
  error: (iss) =>
    iss.code === "invalid_type" ? "must be a map like { groups: [devs] } or {}" : undefined,
}).nullable().transform((u) => u ?? { groups: [] as string[] });

const _ServiceSchema = z.strictObject({
  node: _text("n1", "name the node that hosts this service, e.g. node: n1"),
  target: _hostPortField(
    "127.0.0.1:8080",
    "the TCP address the node connects to, e.g. target: 127.0.0.1:8080",
  ),
  port: _Port.optional(),
  allow: z.array(
    z.string({ error: "must be text like user:alice, group:devs, service:ci or gateway:office" }),
    { error: "must be a list of principals, e.g. allow: [group:devs, user:bob]" },
  ).nullish().transform((a) => a ?? []),
}, {
  error: (iss) =>
    iss.code === "invalid_type"
      ? "must be a map like { node: n1, target: 127.0.0.1:8080, allow: [group:devs] }"
      : undefined,
});

const _GatewayClientSchema = z.strictObject({
  /** The services this LAN client may use through the gateway. */
  services: z.array(_nameKey("service"), {
    error: "must be a list of service names, e.g. services: [web, ci]",
  }).nullish().transform((s) => s ?? []),
}).nullable().transform((c) => c ?? { services: [] as string[] });

const _GatewaySchema = z.strictObject({
  listen: _hostPortField(
    "192.168.1.10:1080",
    "the LAN address for SOCKS5 clients, e.g. listen: 192.168.1.10:1080",
  ).optional(),
  /** Source networks LAN clients may connect from. */
  allow_cidr: z.array(
    z.string().refine((t) => {
      try {
        parseCidr(t);
        return true;
      } catch {
        return false;
      }
    }, { error: "must be a network like 192.168.1.0/24 (no host bits after the prefix)" }),
    {
      error: "must be a list of networks, e.g. allow_cidr: [192.168.1.0/24]",
    },
  ).nullish().transform((a) => a ?? []),
  /** Listening on a public address must be said explicitly. */
  allow_public: z.boolean({ error: "must be true or false" }).optional(),
  clients: _namedMap("client", _GatewayClientSchema, "printer: { services: [web] }"),
}, {
  error: (iss) =>
    iss.code === "invalid_type" ? "must be a map like { listen: 192.168.1.10:1080 }" : undefined,
}).nullable().transform((g) =>
  g ?? { allow_cidr: [] as string[], clients: {} as Record<string, { services: string[] }> }
);

const _Serial = z.string({
  error: (iss) =>
    iss.input === undefined
      ? "is required: the certificate's serial number in hex"
      : typeof iss.input === "number"
      ? `must be in quotes so YAML keeps it as hex text, e.g. serial: "0123abcd"`
      : 'must be the certificate\'s serial number in hex, e.g. serial: "0123abcd"',
}).superRefine((s, ctx) => {
  // Colons are accepted because certificate viewers print serials as 3F:A2:...
  const hex = s.replaceAll(":", "");
  if (!/^[0-9a-fA-F]+$/.test(hex)) {
    ctx.addIssue({
      code: "custom",
      message: `'${s}' is not a hex serial number; copy it as printed, e.g. 3fa2c4...`,
    });
  } else if (hex.length > MAX_SERIAL_HEX_DIGITS) {
    ctx.addIssue({
      code: "custom",
      message: `'${s}' is longer than a certificate serial (${MAX_SERIAL_HEX_DIGITS} hex digits)`,
    });
  }
}).transform(normalizeSerial);

const _RevocationSchema = z.strictObject({
  serial: _Serial,
  principal: _text("user:alice", "whose certificate this is, e.g. principal: user:alice")
    .transform(parsedBy(parsePrincipal)),
  reason: _text("laptop lost").optional(),
  date: _text("2026-11-25").optional(),
}, {
  error: (iss) =>
    iss.code === "invalid_type"
      ? 'must be a map like { serial: "3fa2...", principal: user:alice }'
      : undefined,
});

function _serviceList(field: string) {
  return z.array(_nameKey("service"), {
    error: `must be a list of service names, e.g. ${field}: [web, ci]`,
  }).nullish().transform((s) => s ?? []);
}

/** A policy test (`florctl check` evaluates it, lib/policy_tests.ts): what one principal
 * must and must not reach, so a change to groups or allow lists cannot silently widen or
 * cut access. */
const _PolicyTestSchema = z.strictObject({
  principal: _text("user:alice", "who the test is about, e.g. principal: user:alice")
    .transform(parsedBy(parsePrincipal)),
  reach: _serviceList("reach"),
  deny: _serviceList("deny"),
}, {
  error: (iss) =>
    iss.code === "invalid_type"
      ? "must be a map like { principal: user:alice, reach: [web], deny: [db] }"
      : undefined,
});

const _ClusterSchema = z.strictObject({
  cluster: _text("acme", "name the cluster, e.g. cluster: acme").refine(isValidName, {
    error: (iss) => `bad cluster name '${String(iss.input)}': ${NAME_RULE}`,
  }),
  nodes: _namedMap("node", _NodeSchema, "n1: { endpoint: 203.0.113.10:7101 }"),
  users: _namedMap("user", _UserSchema, "alice: { groups: [devs] }"),
  services: _namedMap("service", _ServiceSchema, "web: { node: n1, target: 127.0.0.1:8080 }"),
  gateways: _namedMap("gateway", _GatewaySchema, "office: { listen: 192.168.1.10:1080 }"),
  revoked: z.array(_RevocationSchema, {
    error: 'must be a list of revocations, each like - { serial: "3fa2...", principal: user:x }',
  }).nullish().transform((r) => r ?? []),
  tests: z.array(_PolicyTestSchema, {
    error: "must be a list of policy tests, each like - { principal: user:alice, reach: [web] }",
  }).nullish().transform((t) => t ?? []),
}, {
  error: (iss) =>
    iss.code === "invalid_type"
      ? "must be a YAML map starting with 'cluster: NAME' (`florctl init` writes one)"
      : undefined,
});

/** The schema's output: addresses and principals parsed, allow lists still text, because
 * what they may name depends on the other sections (the cross-check parses them). */
type _Parsed = z.infer<typeof _ClusterSchema>;

/** What an allow list admits: a user, service or gateway by name, or every user of a group. */
export interface AllowEntry {
  kind: "user" | "group" | "service" | "gateway";
  name: string;
}

/** A service of a checked cluster: target parsed, allow list parsed. */
export type Service = Omit<_Parsed["services"][string], "allow"> & { allow: AllowEntry[] };

/** A checked cluster map: every value parsed once, at load. Built only by checkCluster. */
export type Cluster = Omit<_Parsed, "services"> & { services: Record<string, Service> };

/** The sections that name principals, in either form. */
type _Sections = Pick<_Parsed, "nodes" | "users" | "gateways"> & {
  services: Record<string, unknown>;
};

// ---- references between sections ----

/** `node:x` parses (so the check can explain why it is wrong) but never gets into a Cluster. */
type _ParsedAllowEntry = AllowEntry | { kind: "node"; name: string };

const _ALLOW_KINDS = ["user", "group", "service", "gateway", "node"];

/** Parses an allow-list entry such as `group:devs`; throws Error saying how to write it. */
export function parseAllowEntry(text: string): _ParsedAllowEntry {
  const forms = "user:NAME, group:NAME, service:NAME or gateway:NAME";
  const i = text.indexOf(":");
  if (i < 0) throw new Error(`'${text}' is not an allow entry; write ${forms}`);
  const kind = text.slice(0, i);
  const name = text.slice(i + 1);
  if (!_ALLOW_KINDS.includes(kind)) {
    throw new Error(`'${text}': unknown kind '${kind}'; write ${forms}`);
  }
  if (!isValidName(name)) throw new Error(`'${text}': bad name '${name}': ${NAME_RULE}`);
  return { kind: kind as _ParsedAllowEntry["kind"], name };
}

/** `group:devs`: an allow entry as cluster.yaml writes it. */
export function allowEntryString(e: AllowEntry): string {
  return `${e.kind}:${e.name}`;
}

/** Whether the cluster map defines this principal (a revoked or deleted one may be gone). */
export function hasPrincipal(c: _Sections, p: Principal): boolean {
  return Object.hasOwn(_section(c, p.kind), p.name);
}

/**
 * The entry `name` of a cluster map section, or undefined. Sections are plain objects, so
 * `section[name]` would find `constructor` or `toString` on every one of them: look names
 * up through this (or Object.hasOwn), never by indexing.
 */
export function entryOf<T>(section: Readonly<Record<string, T>>, name: string): T | undefined {
  return Object.hasOwn(section, name) ? section[name] : undefined;
}

function _section(c: _Sections, kind: PrincipalKind): Record<string, unknown> {
  switch (kind) {
    case "node":
      return c.nodes;
    case "user":
      return c.users;
    case "service":
      return c.services;
    case "gateway":
      return c.gateways;
  }
}

/** The port clients must ask for: `port`, or the target's port. */
export function servicePort(svc: Pick<Service, "port" | "target">): number {
  return svc.port ?? svc.target.port;
}

/** Revoked certificate serials, lowercase hex. */
export function revokedSerials(c: Cluster): Set<string> {
  return new Set(c.revoked.map((r) => r.serial));
}

/** True for users with `role: admin` (the operator identity florctl uses on the mesh). */
export function isAdmin(c: Cluster, p: Principal): boolean {
  return p.kind === "user" && Object.hasOwn(c.users, p.name) && c.users[p.name].role === "admin";
}

/** Every group some user belongs to. */
export function groupsOf(c: Pick<Cluster, "users">): Set<string> {
  return new Set(Object.values(c.users).flatMap((u) => u.groups));
}

export interface ClusterCheck {
  cluster?: Cluster;
  problems: ConfigProblem[];
}

/** Syntax + schema + cross-reference checks. cluster is set when there are no errors
 * (warnings allowed). */
export function checkCluster(text: string, file: string): ClusterCheck {
  const parsed = parseYamlWithSchema(text, file, _ClusterSchema);
  const { value, doc, lineCounter } = parsed;
  if (value === undefined || doc === undefined) return { problems: parsed.problems };
  const found: ConfigProblem[] = [];
  _crossCheck(value, {
    lineOf: (path) => locate(doc, lineCounter, path).line,
    report: (path, message, severity = "error") =>
      found.push(problemAt(file, doc, lineCounter, path, message, severity)),
  });
  const problems = [...parsed.problems, ...sortProblems(found)];
  return problems.some((p) => p.severity === "error")
    ? { problems }
    : { cluster: _withAllowLists(value), problems };
}

/** checkCluster, throwing ConfigError on any error. */
export function loadCluster(text: string, file: string): Cluster {
  const { cluster, problems } = checkCluster(text, file);
  if (cluster === undefined) throw new ConfigError(problems.filter((p) => p.severity === "error"));
  return cluster;
}

/** The allow lists parsed, once the cross-check has found every entry valid (a `node:` entry
 * is an error there, so none is dropped here). */
function _withAllowLists(c: _Parsed): Cluster {
  const services = Object.fromEntries(
    Object.entries(c.services).map(([name, svc]) => {
      const allow = svc.allow.map(parseAllowEntry).filter((e): e is AllowEntry =>
        e.kind !== "node"
      );
      return [name, { ...svc, allow }];
    }),
  );
  return { ...c, services };
}

interface _Reporter {
  lineOf(path: ConfigPath): number;
  report(path: ConfigPath, message: string, severity?: ConfigProblem["severity"]): void;
}

function _crossCheck(c: _Parsed, r: _Reporter): void {
  _checkEndpoints(c, r);
  _checkServiceNodes(c, r);
  _checkServiceTargets(c, r);
  _checkAllowLists(c, r);
  _checkGateways(c, r);
  _checkRevocations(c, r);
}

/** No two nodes share an endpoint (compared canonically: [0:0::1] is [::1]). */
function _checkEndpoints(c: _Parsed, r: _Reporter): void {
  const endpoints = new Map<string, string>();
  for (const [name, node] of Object.entries(c.nodes)) {
    const key = formatHostPort(node.endpoint);
    const first = endpoints.get(key);
    if (first === undefined) {
      endpoints.set(key, name);
      continue;
    }
    const line = r.lineOf(["nodes", first, "endpoint"]);
    r.report(
      ["nodes", name, "endpoint"],
      `endpoint ${key} is already node '${first}''s endpoint (line ${line}); ` +
        "give each node its own host:port",
    );
  }
}

/** Each service names a defined node; its target is neither that node's own endpoint nor
 * another service's target on the same node. */
function _checkServiceNodes(c: _Parsed, r: _Reporter): void {
  const targets = new Map<string, string>(); // "node target" → first service
  for (const [name, svc] of Object.entries(c.services)) {
    const at = (...rest: (string | number)[]) => ["services", name, ...rest];
    const node = entryOf(c.nodes, svc.node);
    if (node === undefined) {
      r.report(
        at("node"),
        `node '${svc.node}' is not defined; add it with ` +
          `\`florctl node add ${svc.node} --endpoint HOST:PORT\` or fix the name` +
          _didYouMean(svc.node, Object.keys(c.nodes)),
      );
      continue;
    }
    const target = formatHostPort(svc.target);
    if (sameHostPort(svc.target, node.endpoint)) {
      r.report(
        at("target"),
        `service port clash: target ${target} is node '${svc.node}''s own endpoint, ` +
          "where its flor agent listens; use the address the service itself listens on",
      );
    }
    const first = targets.get(`${svc.node} ${target}`);
    if (first === undefined) {
      targets.set(`${svc.node} ${target}`, name);
    } else {
      const line = r.lineOf(["services", first, "target"]);
      r.report(
        at("target"),
        `service port clash: service '${first}' on node '${svc.node}' already has target ` +
          `${target} (line ${line}); point this one at its own port or remove one of them`,
      );
    }
  }
}

/** A warning for a target on a public IP address: the node would relay to the Internet. */
function _checkServiceTargets(c: _Parsed, r: _Reporter): void {
  for (const [name, svc] of Object.entries(c.services)) {
    const { host } = svc.target;
    if (parseIp(host) && !isPrivateOrLoopback(host)) {
      r.report(
        ["services", name, "target"],
        `target ${formatHostPort(svc.target)} is neither loopback nor a private network: the ` +
          "node will relay to a public address; if that is intended, nothing to do",
        "warning",
      );
    }
  }
}

/** Every allow entry parses and names something defined; an empty list is a warning. */
function _checkAllowLists(c: _Parsed, r: _Reporter): void {
  const groups = groupsOf(c);
  for (const [name, svc] of Object.entries(c.services)) {
    if (svc.allow.length === 0) {
      r.report(
        ["services", name, "allow"],
        `nobody can reach service '${name}': its allow list is empty; ` +
          "add who may connect, e.g. allow: [group:devs, user:bob]",
        "warning",
      );
    }
    svc.allow.forEach((entry, i) => {
      const problem = _allowProblem(c, groups, entry);
      if (problem !== undefined) r.report(["services", name, "allow", i], problem);
    });
  }
}

/** A gateway listens on a private address unless told otherwise, admits some network, and
 * its clients name services that allow the gateway. */
function _checkGateways(c: _Parsed, r: _Reporter): void {
  for (const [name, gw] of Object.entries(c.gateways)) {
    const at = (...rest: (string | number)[]) => ["gateways", name, ...rest];
    const host = gw.listen?.host;
    if (host !== undefined && !gw.allow_public && !(parseIp(host) && isPrivateOrLoopback(host))) {
      r.report(
        at("listen"),
        `${formatHostPort(gw.listen!)} is not a private (LAN) address: a gateway lends its ` +
          "identity to its clients, so it listens publicly only with allow_public: true",
      );
    }
    if (gw.listen && gw.allow_cidr.length === 0) {
      r.report(
        at("allow_cidr"),
        "no client network is allowed, so nobody can use this gateway; " +
          "add e.g. allow_cidr: [192.168.1.0/24]",
        "warning",
      );
    }
    const id = principalString({ kind: "gateway", name });
    for (const [client, spec] of Object.entries(gw.clients)) {
      spec.services.forEach((svc, i) => {
        if (!Object.hasOwn(c.services, svc)) {
          r.report(
            at("clients", client, "services", i),
            `service '${svc}' is not defined` + _didYouMean(svc, Object.keys(c.services)),
          );
        } else if (!c.services[svc].allow.includes(id)) {
          r.report(
            at("clients", client, "services", i),
            `service '${svc}' does not allow ${id}, so ${client} cannot reach it ` +
              `through the gateway; add ${id} to services.${svc}.allow`,
            "warning",
          );
        }
      });
    }
  }
}

/** A warning for a revocation of a principal the cluster no longer has. */
function _checkRevocations(c: _Parsed, r: _Reporter): void {
  c.revoked.forEach((rev, i) => {
    if (!hasPrincipal(c, rev.principal)) {
      r.report(
        ["revoked", i, "principal"],
        `${principalString(rev.principal)} is not in this cluster (perhaps removed after it ` +
          "was revoked); nothing to do unless the name is a typo",
        "warning",
      );
    }
  });
}

function _allowProblem(c: _Parsed, groups: Set<string>, entry: string): string | undefined {
  let e: _ParsedAllowEntry;
  try {
    e = parseAllowEntry(entry);
  } catch (err) {
    return (err as Error).message;
  }
  switch (e.kind) {
    case "node":
      return `nodes are not principals in allow lists, so '${entry}' never matches; ` +
        `to let a workload on node '${e.name}' connect, list its service identity (service:NAME)`;
    case "group":
      return groups.has(e.name) ? undefined : `no user is in group '${e.name}'; ` +
        `add it to a user (users.NAME.groups: [${e.name}]) or fix the name` +
        _didYouMean(e.name, groups);
    case "user":
      return Object.hasOwn(c.users, e.name) ? undefined : `user '${e.name}' is not defined; ` +
        `add it with \`florctl user add ${e.name}\` or fix the name` +
        _didYouMean(e.name, Object.keys(c.users));
    case "service":
      return Object.hasOwn(c.services, e.name)
        ? undefined
        : `service '${e.name}' is not defined; ` +
          `add it with \`florctl service add ${e.name} --node NODE --target HOST:PORT\` ` +
          "or fix the name" + _didYouMean(e.name, Object.keys(c.services));
    case "gateway":
      return Object.hasOwn(c.gateways, e.name)
        ? undefined
        : `gateway '${e.name}' is not defined; ` +
          `add it with \`florctl gateway add ${e.name}\` or fix the name` +
          _didYouMean(e.name, Object.keys(c.gateways));
  }
}

function _didYouMean(name: string, candidates: Iterable<string>): string {
  const close = closestMatch(name, candidates);
  return close === undefined ? "" : ` (did you mean '${close}'?)`;
}

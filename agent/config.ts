/**
 * flor.yaml: what one agent runs as, where it listens, and where its files are.
 *
 * Written by `florctl bundle`, hand-editable. Paths are relative to the file's directory.
 * Loading is strict (file:line for every problem); the listen flags of `flor run` override
 * the addresses here so tests and the demo can run many agents on one machine.
 */
import { dirname, isAbsolute, join } from "node:path";
import { z } from "zod";
import { parseHostPort } from "../lib/host_port.ts";
import {
  ConfigError,
  type ConfigProblem,
  locate,
  parsedBy,
  parseYamlWithSchema,
} from "../lib/config_problems.ts";
import { parsePrincipal, principalString } from "../lib/identity.ts";
import { LOG_LEVELS } from "../lib/log.ts";
import {
  forwardKey,
  ForwardSpecError,
  parseForwardListen,
  parseForwardTarget,
} from "./forward_spec.ts";
import { CONGESTION_CONTROLLERS, DEFAULT_CONGESTION } from "../lib/congestion.ts";
import { DEFAULT_UDP_BUFFER_BYTES } from "../lib/udp_buffer.ts";

/** Text the shared parsers accept, failing with their messages (what is wrong and how to write
 * it). Kept as text: `flor run`'s listen flags override these, and bundles write them back. */
function _checkedBy(parse: (text: string) => unknown) {
  const check = parsedBy(parse);
  return z.string().superRefine((text, ctx) => void check(text, ctx));
}

const hostPort = _checkedBy(parseHostPort);

const listenAddr = z.union([z.literal("off"), hostPort]);

const principal = _checkedBy(parsePrincipal);

const IdentitySchema = z.strictObject({
  principal,
  cert: z.string().min(1),
  key: z.string().min(1),
  /** RFC 1929 password file for principals that local workloads select by username. */
  password_file: z.string().min(1).optional(),
});

/** `forwards:` entries: `listen` is PORT or BIND:PORT (YAML reads a bare port as a number),
 * `service` is SERVICE[.flor][:PORT]. The service is checked against the map at run time, since
 * the map changes without a restart. */
const ForwardSchema = z.strictObject({
  listen: z.union([z.string(), z.number().int()]).transform((v) => String(v)),
  service: z.string().min(1),
});

const positive = (d: number) => z.number().int().positive().default(d);

/** Hard caps refuse new work (SOCKS 0x01) instead of falling over; `*_warn` thresholds only
 * raise `resource.high` / `peer.slow` events. Defaults fit a small server (2 cores, 2 GB). */
export const LimitsSchema = z.strictObject({
  max_tunnels: positive(4096),
  max_tunnels_per_principal: positive(4096),
  /** SOCKS connections open at once, handshaking or tunnelling: each is a descriptor, and relay
   * buffers once it tunnels. As many as max_tunnels: a connection
   * beyond that could never get a tunnel; a flood of idle handshakes holds no more. */
  max_socks_connections: positive(4096),
  /** New QUIC connections a single source address may open per second (and burst). */
  connections_per_source_per_s: positive(20),
  connections_per_source_burst: positive(40),
  rss_mb_warn: positive(512),
  event_loop_lag_ms_warn: positive(250),
  open_fds_warn: positive(8192),
  rtt_ms_warn: positive(500),
  /** A tunnel held back by the network (not its sender) below this many MB/s is `flow.slow`. */
  flow_mbytes_per_s_warn: z.number().positive().default(1),
});

export type Limits = z.infer<typeof LimitsSchema>;

/** How this agent's QUIC moves packets (docs/transport.md has the measurements). */
export const TransportSchema = z.strictObject({
  /** bbr: loss is not read as congestion, so 1% random loss keeps most of the link; cubic: the
   * classic loss-based controller. Measured on an emulated 40 ms link (docs/transport.md). */
  congestion: z.enum(CONGESTION_CONTROLLERS).default(DEFAULT_CONGESTION),
  /** Receive and send buffer asked for the QUIC socket. 7.5 MB is quic-go's figure: a burst
   * at 1 Gbit/s for ~60 ms while JavaScript runs; the kernel default (208 KiB) overflows. */
  udp_buffer_bytes: positive(DEFAULT_UDP_BUFFER_BYTES),
});

export type Transport = z.infer<typeof TransportSchema>;

export const AgentConfigSchema = z.strictObject({
  version: z.literal(1),
  cluster: z.string().min(1),
  ca: z.string().min(1),
  cluster_map: z.string().min(1),
  /** Set on nodes: the agent serves QUIC as node:<name>. */
  node: z.string().min(1).optional(),
  listen: z.strictObject({
    quic: hostPort.optional(),
    socks: listenAddr.default("off"),
    metrics: listenAddr.default("off"),
  }),
  socks: z.strictObject({
    /** Principal used when a SOCKS client offers no credentials. */
    default_identity: principal.optional(),
  }).default({}),
  identities: z.array(IdentitySchema).min(1),
  /** Set for flor-gw: SOCKS5 for LAN devices, every client with credentials, tunnels as
   * the gateway's identity. */
  gateway: z.strictObject({
    name: z.string().min(1),
    /** Password hashes of the LAN clients (lib/password_hash.ts), one per client name. */
    clients_file: z.string().min(1),
    /** Tunnels one LAN client (one name and password) may hold at once. 256: a browser on
     * a busy intranet page holds ~6 per host over a few dozen hosts, and several devices
     * behind one NAT may share a name; the issue 11 test opens 200 at once. */
    max_connections_per_client: positive(256),
    /** SOCKS connections one source address may hold at once, logged in or not (each is a
     * descriptor until the 10 s handshake deadline). As many as one client's tunnels: a
     * client behind NAT can use all of them; a host trickling greetings holds no more. */
    max_connections_per_source: positive(256),
  }).optional(),
  log: z.strictObject({ level: z.enum(LOG_LEVELS).default("info") }).default({ level: "info" }),
  /** Writable directory for the run marker and restart counters (default: state/ next to
   * this file; enroll points it at the service's state directory). */
  state_dir: z.string().min(1).optional(),
  limits: LimitsSchema.default(LimitsSchema.parse({})),
  transport: TransportSchema.default(TransportSchema.parse({})),
  /** The local HTTP endpoint (listen.metrics): names besides its address and localhost that
   * requests may carry as Host, e.g. the name Prometheus scrapes it by. Others get 421. */
  metrics: z.strictObject({
    allowed_hosts: z.array(
      z.string().regex(/^[a-zA-Z0-9._-]+$|^[0-9a-fA-F:.]+$/, {
        message: "must be a host name or IP address without a port, e.g. node1.example.com",
      }),
    ).default([]),
  }).default({ allowed_hosts: [] }),
  /** Users and gateways: how often to ask a node for a newer CA-signed cluster map. */
  map_refresh_s: z.number().int().positive().default(60),
  /** Local port forwards kept across restarts (agent/forward_spec.ts). */
  forwards: z.array(ForwardSchema).default([]),
});

export type AgentConfig = z.infer<typeof AgentConfigSchema>;

export interface LoadedAgentConfig {
  config: AgentConfig;
  file: string;
  /** The file's text as read (part of the config hash). */
  text: string;
  /** Resolves a path written in the file against the file's directory. */
  resolve(path: string): string;
}

/** Parses flor.yaml text; throws ConfigError listing every problem with its line. */
export function parseAgentConfig(text: string, file: string): LoadedAgentConfig {
  const r = parseYamlWithSchema(text, file, AgentConfigSchema);
  const problems: ConfigProblem[] = [...r.problems];
  const config = r.value;
  if (config) {
    const where = (path: (string | number)[], message: string) => {
      const at = r.doc ? locate(r.doc, r.lineCounter, path) : { line: 1, column: 1 };
      problems.push({ file, ...at, path: path.join("."), message, severity: "error" });
    };
    const principals = config.identities.map((i) => i.principal);
    if (config.node) {
      if (!principals.includes(principalString({ kind: "node", name: config.node }))) {
        where(["identities"], `no identity for node:${config.node}; re-create the bundle`);
      }
      if (!config.listen.quic) {
        where(["listen", "quic"], "a node needs listen.quic (the UDP address it serves on)");
      }
    }
    if (config.gateway) {
      if (!principals.includes(principalString({ kind: "gateway", name: config.gateway.name }))) {
        where(
          ["identities"],
          `no identity for gateway:${config.gateway.name}; re-create the bundle`,
        );
      }
      if (config.socks.default_identity) {
        where(
          ["socks", "default_identity"],
          "a gateway has no default identity: every LAN client must log in",
        );
      }
    }
    const def = config.socks.default_identity;
    if (def && !principals.includes(def)) {
      where(["socks", "default_identity"], `${def} is not one of identities[].principal`);
    }
    checkForwards(config, where);
  }
  const errors = problems.filter((p) => p.severity === "error");
  if (errors.length || !config) throw new ConfigError(errors.length ? errors : problems);
  const dir = dirname(file);
  return { config, file, text, resolve: (p) => (isAbsolute(p) ? p : join(dir, p)) };
}

/** Each forward's two sides parse, no local address is used twice, and there is an identity
 * to lend (forwards speak as socks.default_identity, as a user's SOCKS5 port does). */
function checkForwards(
  config: AgentConfig,
  where: (path: (string | number)[], message: string) => void,
) {
  const seen = new Map<string, number>();
  config.forwards.forEach((f, i) => {
    if (!config.socks.default_identity) {
      where(
        ["forwards", i],
        "forwards speak as socks.default_identity and this agent has none: only a user's " +
          "agent (or one with socks.default_identity) can forward",
      );
    }
    const problem = (key: string, check: () => void) => {
      try {
        check();
      } catch (e) {
        if (!(e instanceof ForwardSpecError)) throw e;
        where(["forwards", i, key], e.message);
      }
    };
    problem("service", () => parseForwardTarget({ cluster: config.cluster }, f.service));
    problem("listen", () => {
      const key = forwardKey(parseForwardListen(f.listen));
      const first = seen.get(key);
      if (first !== undefined && !key.endsWith(":0")) {
        throw new ForwardSpecError(`${key} is already forwarded by forwards[${first}]`);
      }
      seen.set(key, i);
    });
  });
}

export async function loadAgentConfig(file: string): Promise<LoadedAgentConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new Error(
      `cannot read ${file}: ${
        (e as Error).message
      }: pass the flor.yaml (flor-gw.yaml for flor-gw) from your bundle`,
    );
  }
  return parseAgentConfig(text, file);
}

/**
 * The SOCKS side's decisions, pure: whether a new connection is served at all
 * (`admitConnection`, right after accept, before a byte is read) and what a CONNECT request
 * gets (`decideConnect`): a refusal with its SOCKS reply, reason and event, or the node and
 * service to open a tunnel to. agent/socks_server.ts only moves bytes and applies these; the
 * node checks the policy again and its answer is authoritative.
 */
import { anyContains, type Cidr } from "../lib/cidr.ts";
import type { Cluster } from "../lib/cluster.ts";
import { type Principal, principalString } from "../lib/identity.ts";
import { authorize, type Denial, DENIALS, serviceFromHost, serviceLabel } from "../lib/policy.ts";
import { Command, Reply, type ReplyCode, type Request } from "../lib/socks5.ts";

export interface EdgeLimits {
  /** SOCKS connections open at once on this listener. */
  maxConnections: number;
  /** flor-gw: per source address. */
  maxPerSource?: number;
  /** flor-gw: the networks its LAN clients connect from. */
  allowed?: readonly Cidr[];
}

export type EdgeRefusal = "source_denied" | "source_limit" | "total_limit";

export type Admission =
  | { admit: true }
  | { admit: false; reason: EdgeRefusal; message: string };

/** `open`: connections being served now, in all and from this source. */
export function admitConnection(
  source: string,
  open: { total: number; fromSource: number },
  limits: EdgeLimits,
): Admission {
  if (limits.allowed && !anyContains(limits.allowed, source)) {
    return {
      admit: false,
      reason: "source_denied",
      message: `${source} is not in the gateway's allow_cidr (gateways.<name>.allow_cidr in ` +
        "cluster.yaml)",
    };
  }
  if (limits.maxPerSource !== undefined && open.fromSource >= limits.maxPerSource) {
    return {
      admit: false,
      reason: "source_limit",
      message: `${source} already holds ${open.fromSource} SOCKS connections; if it is a NAT ` +
        "for many devices, raise gateway.max_connections_per_source in flor-gw.yaml",
    };
  }
  if (open.total >= limits.maxConnections) {
    return {
      admit: false,
      reason: "total_limit",
      message: `${open.total} SOCKS connections open; raise limits.max_socks_connections ` +
        "in the agent's flor.yaml if this load is expected",
    };
  }
  return { admit: true };
}

/** Who speaks on a SOCKS connection; for flor-gw also the LAN client and its services. */
export interface ConnectCaller {
  principal: Principal;
  lanClient?: string;
  services?: ReadonlySet<string>;
}

export interface ConnectLimits {
  /** limits.max_tunnels: tunnels this agent's SOCKS side holds at once. */
  maxTunnels: number;
  /** flor-gw: gateway.max_connections_per_client. */
  maxPerClient?: number;
}

/** Tunnels held now by this listener, and by the caller's LAN client. */
export interface ConnectCounts {
  tunnels: number;
  ofClient: number;
}

export type ConnectRefusal =
  | "command"
  | "raw_ip"
  | "client_not_allowed"
  | "capacity"
  | "client_limit"
  | Denial;

export type ConnectDecision =
  | { open: true; node: string; service: string; port: number }
  | {
    open: false;
    reply: ReplyCode;
    reason: ConnectRefusal;
    message: string;
    /** flor_access_denied_total labels, for refusals by policy or the client's list. */
    denied?: { side: "gateway" | "client"; service: string };
    /** A security event beyond `socks.refused`. */
    event?: { name: "access.denied"; fields: Record<string, unknown> };
  };

export function decideConnect(
  caller: ConnectCaller,
  request: Request,
  cluster: Cluster,
  limits: ConnectLimits,
  counts: ConnectCounts,
): ConnectDecision {
  const dest = `${request.address.host}:${request.port}`;
  if (request.command !== Command.CONNECT) {
    return refuse(Reply.COMMAND_NOT_SUPPORTED, "command", "only CONNECT is supported");
  }
  if (request.address.type !== "domain") {
    return refuse(
      Reply.NOT_ALLOWED,
      "raw_ip",
      "raw IP destinations are refused: ask for <service>.flor",
    );
  }
  const service = serviceFromHost(cluster, request.address.host);
  if (!service) {
    return refuse(DENIALS.unknown_service.reply, "unknown_service", `${dest} is not a service`);
  }
  const label = serviceLabel(cluster, service);
  if (caller.services && !caller.services.has(service)) {
    const principal = principalString(caller.principal);
    return {
      ...refuse(
        Reply.NOT_ALLOWED,
        "client_not_allowed",
        `${caller.lanClient} may not use ${service} through this gateway`,
      ),
      denied: { side: "gateway", service: label },
      event: {
        name: "access.denied",
        fields: { principal, lan_client: caller.lanClient, service },
      },
    };
  }
  if (counts.tunnels >= limits.maxTunnels) {
    return refuse(Reply.GENERAL_FAILURE, "capacity", `${limits.maxTunnels} tunnels open`);
  }
  if (
    caller.lanClient !== undefined && limits.maxPerClient !== undefined &&
    counts.ofClient >= limits.maxPerClient
  ) {
    return refuse(
      Reply.GENERAL_FAILURE,
      "client_limit",
      `${caller.lanClient} has ${limits.maxPerClient} connections open ` +
        "(gateway.max_connections_per_client in flor-gw.yaml)",
    );
  }
  const decision = authorize(cluster, caller.principal, service, request.port);
  if (!decision.allow) {
    return {
      ...refuse(DENIALS[decision.reason].reply, decision.reason, decision.message),
      denied: { side: "client", service: label },
    };
  }
  return { open: true, node: decision.node, service, port: request.port };
}

function refuse(reply: ReplyCode, reason: ConnectRefusal, message: string) {
  return { open: false as const, reply, reason, message };
}

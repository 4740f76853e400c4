/**
 * The node's answer to a stream header from an authenticated peer: ping, map, status, or a
 * tunnel to a service, and for a tunnel whether to dial its target. Pure: the request, the
 * peer's verified principal, the node's cluster view, its limits and open-tunnel counts in;
 * the reply, the event to log, the metric to count and the target to dial out.
 * agent/quic_server.ts moves the bytes and applies the decision.
 */
import { isAdmin } from "../lib/cluster.ts";
import type { HostPort } from "../lib/host_port.ts";
import { MAX_FRAME_BYTES } from "../lib/binary.ts";
import { type Principal, principalString } from "../lib/identity.ts";
import { authorize, DENIALS, serviceLabel } from "../lib/policy.ts";
import { type StreamRequest, TunnelStatus as Status } from "../lib/tunnel_header.ts";
import type { ClusterView } from "./runtime.ts";

export interface GateEvent {
  level: "info" | "warn";
  name: string;
  fields: Record<string, unknown>;
}

/** Which counter a refusal increments (agent_metrics.ts), with its labels. */
export type GateCount =
  | { metric: "accessDenied"; service: string }
  | { metric: "tunnelsFailed"; reason: "wrong_node" | "capacity" };

export type StreamDecision =
  | {
    action: "reply";
    status: Status;
    message: string;
    /** After an OK reply: one more frame, the bytes given or the node's status document. */
    body?: Uint8Array | "status";
    event?: GateEvent;
    count?: GateCount;
  }
  | { action: "dial"; service: string; target: HostPort };

export interface StreamGateInput {
  request: StreamRequest;
  principal: Principal;
  view: Pick<ClusterView, "cluster" | "text" | "signature">;
  /** The node this agent serves as. */
  node: string;
  limits: { max_tunnels: number; max_tunnels_per_principal: number };
  /** Tunnels open now on this node, in total and for this principal. */
  open: { total: number; forPrincipal: number };
}

export function decideStream(g: StreamGateInput): StreamDecision {
  const reply = (status: Status, message: string, more: Partial<StreamDecision> = {}) =>
    ({ action: "reply", status, message, ...more }) as StreamDecision;
  const principal = principalString(g.principal);
  const { cluster } = g.view;
  switch (g.request.kind) {
    case "ping":
      return reply(Status.OK, "");
    case "map":
      return _mapReply(g.view);
    case "status":
      if (isAdmin(cluster, g.principal)) return reply(Status.OK, "", { body: "status" });
      return reply(Status.NOT_ALLOWED, "status is for the operator (role: admin)", {
        event: { level: "warn", name: "access.denied", fields: { principal, request: "status" } },
      });
  }
  const { service, port } = g.request;
  const decision = authorize(cluster, g.principal, service, port);
  if (!decision.allow) {
    return reply(DENIALS[decision.reason].status, decision.message, {
      event: {
        level: "warn",
        name: "access.denied",
        fields: { principal, service, port, reason: decision.reason },
      },
      count: { metric: "accessDenied", service: serviceLabel(cluster, service) },
    });
  }
  if (decision.node !== g.node) {
    return reply(
      Status.UNKNOWN_SERVICE,
      `${service} is hosted on ${decision.node}, not on ${g.node}`,
      { count: { metric: "tunnelsFailed", reason: "wrong_node" } },
    );
  }
  if (
    g.open.total >= g.limits.max_tunnels ||
    g.open.forPrincipal >= g.limits.max_tunnels_per_principal
  ) {
    return reply(Status.OVER_CAPACITY, "too many open tunnels; try again later", {
      event: {
        level: "warn",
        name: "tunnel.over_capacity",
        fields: { principal, service, open: g.open.total, open_for_principal: g.open.forPrincipal },
      },
      count: { metric: "tunnelsFailed", reason: "capacity" },
    });
  }
  return { action: "dial", service, target: decision.target };
}

/** Any authenticated peer may have the map: it is in every bundle already, and the CA's
 * signature, not this node, is what makes a client trust it. */
function _mapReply(view: StreamGateInput["view"]): StreamDecision {
  const { text, signature } = view;
  if (!signature) return { action: "reply", status: Status.INTERNAL, message: "no signed map" };
  const body = new TextEncoder().encode(JSON.stringify({ map: text, signature }));
  if (body.length > MAX_FRAME_BYTES) {
    return { action: "reply", status: Status.INTERNAL, message: "cluster map too large to serve" };
  }
  return { action: "reply", status: Status.OK, message: "", body };
}

/**
 * The client end of a tunnel, without SOCKS: "open a tunnel to a service as a local identity"
 * and "carry a TCP connection through it". The SOCKS front door (socks_server.ts) and local
 * port forwards both sit on these two calls, so every inbound gets the same early policy
 * check, the same retry on a dead shared connection, and the same events and metrics.
 */
import type { EventLog } from "../lib/log.ts";
import { authorize, DENIALS, serviceLabel } from "../lib/policy.ts";
import { relay, type RelayResult, type TcpDuplex } from "../lib/relay.ts";
import { Reply, type ReplyCode } from "../lib/socks5.ts";
import { StreamBuffer } from "../lib/stream_buffer.ts";
import { frame } from "../lib/binary.ts";
import {
  decodeTunnelReply,
  encodeTunnelRequest,
  MAX_TUNNEL_REPLY_BYTES,
  socksReplyFor,
  TunnelStatus,
  tunnelStatusName,
} from "../lib/tunnel_header.ts";
import { closeState, PeerError } from "../lib/quic_client.ts";
import type { AgentMetrics } from "./agent_metrics.ts";
import type { FlowWatch } from "./flow_watch.ts";
import type { PeerPool } from "./peer_pool.ts";
import type { LocalIdentity, Runtime } from "./runtime.ts";

/** How long the node may take to answer a tunnel request (it dials the target for up to 5 s). */
export const TUNNEL_REPLY_TIMEOUT_MS = 8_000;

export interface TunnelClientDeps {
  rt: Runtime;
  peers: PeerPool;
  log: EventLog;
  metrics: AgentMetrics;
  flows: FlowWatch;
  /** Tunnels carried now, counted here (not read back from the gauge) for limits.max_tunnels;
   * one object shared by every inbound of the agent. */
  counts: TunnelCounts;
}

export interface TunnelCounts {
  open: number;
}

export interface ServiceTarget {
  /** The local identity the tunnel is opened as (its certificate authenticates to the node). */
  identity: LocalIdentity;
  service: string;
  port: number;
}

/** A tunnel the node accepted: carry it with carryTunnel (or close its stream). */
export interface OpenedTunnel {
  ok: true;
  stream: Deno.QuicBidirectionalStream;
  /** Bytes the node sent after its reply (already read): they go to the client first. */
  leftover: Uint8Array;
  node: string;
}

/** Why no tunnel: `reply` is the SOCKS5 code for it, `reason` a metric label and log word. */
export interface TunnelRefusal {
  ok: false;
  reply: ReplyCode;
  reason: string;
  message: string;
}

export type OpenResult = OpenedTunnel | TunnelRefusal;

const PEER_REPLY: Record<PeerError["code"], ReplyCode> = {
  unknown_node: Reply.HOST_UNREACHABLE,
  unreachable: Reply.NETWORK_UNREACHABLE,
  handshake: Reply.NETWORK_UNREACHABLE,
  auth_denied: Reply.NOT_ALLOWED,
};

class TunnelTimeout extends Error {}

function refusal(reply: ReplyCode, reason: string, message: string): TunnelRefusal {
  return { ok: false, reply, reason, message };
}

/**
 * Checks the policy locally (a fast, early answer; the node checks again and its answer
 * counts), then asks the node hosting `service` for a tunnel over the shared connection of
 * (identity, node).
 */
export async function openServiceTunnel(
  deps: TunnelClientDeps,
  target: ServiceTarget,
): Promise<OpenResult> {
  const { rt, metrics } = deps;
  const cluster = rt.view.cluster;
  const decision = authorize(cluster, target.identity.principal, target.service, target.port);
  if (!decision.allow) {
    metrics.accessDenied.inc({ side: "client", service: serviceLabel(cluster, target.service) });
    return refusal(DENIALS[decision.reason].reply, decision.reason, decision.message);
  }
  const limits = rt.loaded.config.limits;
  if (deps.counts.open >= limits.max_tunnels) {
    return refusal(Reply.GENERAL_FAILURE, "capacity", `${limits.max_tunnels} tunnels open`);
  }
  return await openTunnel(deps.peers, target.identity, decision.node, target);
}

/** Opens a tunnel stream to the node, once the caller has decided it may (openServiceTunnel,
 * or the SOCKS gate). A shared connection may have died since its last use (node restarted,
 * network change): that shows as a transport error, and the request is retried once on a
 * fresh connection. A refusal by the node is final. */
export async function openTunnel(
  peers: PeerPool,
  identity: LocalIdentity,
  node: string,
  target: ServiceTarget,
): Promise<OpenResult> {
  for (let attempt = 1;; attempt++) {
    let conn: Deno.QuicConn;
    try {
      conn = await peers.connection(identity, node);
    } catch (e) {
      if (e instanceof PeerError) return refusal(PEER_REPLY[e.code], e.code, e.message);
      throw e;
    }
    try {
      return await requestTunnel(conn, node, target.service, target.port);
    } catch (e) {
      const { timedOut } = await closeState(conn);
      peers.forget(identity, node, conn);
      if (timedOut) {
        // The node stopped answering: say so now rather than wait on a new handshake.
        return refusal(Reply.NETWORK_UNREACHABLE, "node_down", `${node} is not answering`);
      }
      if (attempt < 2) continue;
      if (e instanceof TunnelTimeout) {
        return refusal(Reply.TTL_EXPIRED, "node_timeout", `${node} did not answer in time`);
      }
      return refusal(Reply.NETWORK_UNREACHABLE, "connection_lost", `to ${node}: ${e}`);
    }
  }
}

async function requestTunnel(
  conn: Deno.QuicConn,
  node: string,
  service: string,
  port: number,
): Promise<OpenResult> {
  const stream = await conn.createBidirectionalStream();
  const w = stream.writable.getWriter();
  const sb = new StreamBuffer(stream.readable);
  let timedOut = false;
  const timeout = setTimeout(() => {
    timedOut = true;
    sb.cancel();
  }, TUNNEL_REPLY_TIMEOUT_MS);
  try {
    await w.write(frame(encodeTunnelRequest({ service, port })));
    w.releaseLock();
    const reply = decodeTunnelReply(await sb.readFrame(MAX_TUNNEL_REPLY_BYTES));
    if (reply.status !== TunnelStatus.OK) {
      await stream.writable.close().catch(() => {});
      const reason = `node_${tunnelStatusName(reply.status)}`;
      return refusal(socksReplyFor(reply.status), reason, `${node}: ${reply.message}`);
    }
    return { ok: true, stream, leftover: sb.release(), node };
  } catch (e) {
    await stream.writable.abort().catch(() => {});
    await sb.cancel();
    throw timedOut ? new TunnelTimeout() : e;
  } finally {
    clearTimeout(timeout);
  }
}

/** Who a carried tunnel is for, as its events name it. */
export interface CarryOptions {
  /** `user:alice`, the identity the tunnel was opened as. */
  principal: string;
  service: string;
  /** The local client's address, `host:port`. */
  source: string;
  /** flor-gw: the LAN client speaking as the gateway's identity. */
  lanClient?: string;
  /** Bytes already read from the TCP side (after a SOCKS request) to send first. */
  tcpLeftover?: Uint8Array;
}

/** Relays `tcp` through an opened tunnel until both directions end, with `tunnel.open` and
 * `tunnel.close` events, the tunnel and byte metrics and slow-flow watching. */
export async function carryTunnel(
  deps: TunnelClientDeps,
  tcp: TcpDuplex,
  opened: OpenedTunnel,
  o: CarryOptions,
): Promise<RelayResult> {
  const { log, metrics, flows } = deps;
  const { node } = opened;
  metrics.tunnelsOpened.inc({ side: "client", service: o.service });
  metrics.tunnelsOpen.add({ side: "client" }, 1);
  deps.counts.open++;
  log.info("tunnel.open", {
    side: "client",
    principal: o.principal,
    service: o.service,
    node,
    source: o.source,
    ...(o.lanClient ? { lan_client: o.lanClient } : {}),
  });
  const started = performance.now();
  const untrack = flows.track(tcp, { side: "client", node, service: o.service });
  try {
    const r = await relay(tcp, opened.stream, {
      tcpLeftover: o.tcpLeftover,
      streamLeftover: opened.leftover,
      onBytes: (dir, n) => {
        const direction = dir === "sent" ? "out" : "in";
        metrics.bytes.inc({ side: "client", direction }, n);
        metrics.peerBytes.inc({ node, direction }, n);
      },
    });
    log.info("tunnel.close", {
      side: "client",
      principal: o.principal,
      service: o.service,
      bytes_out: r.sent,
      bytes_in: r.received,
      ms: Math.round(performance.now() - started),
      ...(r.error ? { error: String(r.error), reset: r.reset } : {}),
      ...(r.resetError ? { reset_error: r.resetError } : {}),
    });
    return r;
  } finally {
    untrack();
    metrics.tunnelsOpen.add({ side: "client" }, -1);
    deps.counts.open--;
  }
}

/**
 * The client end of a tunnel, without SOCKS: "open a tunnel to a service as a local identity"
 * and "carry a TCP connection through it". The SOCKS front door (socks_server.ts) and local
 * port forwards both sit on these two calls, so every inbound gets the same early policy
 * check, the same retry on a dead shared connection, and the same events and metrics.
 */
import type { EventLog } from "../lib/log.ts";
import { authorize, DENIALS, serviceLabel } from "../lib/policy.ts";
import { type Duplex, relay, type RelayResult, type TcpDuplex } from "../lib/relay.ts";
import { Reply, type ReplyCode } from "../lib/socks5.ts";
import { exchange, ExchangeError } from "../lib/exchange.ts";
import {
  encodeTunnelRequest,
  socksReplyFor,
  TunnelStatus,
  tunnelStatusName,
} from "../lib/tunnel_header.ts";
import { closeState, PeerError } from "../lib/quic_client.ts";
import type { AgentMetrics } from "./agent_metrics.ts";
import type { FlowWatch } from "./flow_watch.ts";
import type { PeerPool, TunnelSlot } from "./peer_pool.ts";
import type { LocalIdentity, Runtime } from "./runtime.ts";
import { NO_TRACE, type PhaseTrace, traceFields } from "../lib/phase_trace.ts";

/** How long the node may take to answer a tunnel request (it dials the target for up to 5 s). */
export const TUNNEL_REPLY_TIMEOUT_MS = 8_000;

export interface TunnelClientDeps {
  /** Replaced on reload by the inbound that owns these deps (its onChange subscription). */
  rt: Runtime;
  peers: PeerPool;
  log: EventLog;
  metrics: AgentMetrics;
  flows: FlowWatch;
  /** Asks the nodes for a newer map when a name is unknown (agent/map_refresh.ts); true if
   * one was adopted. Absent on nodes, whose map comes from deploy. */
  refreshMap?: () => Promise<boolean>;
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
  /** With the locks the request took on it (the relay goes on with them). */
  stream: Duplex;
  /** Bytes the node sent after its reply (already read): they go to the client first. */
  leftover: Uint8Array;
  node: string;
  /** The stream's place on its connection (carryTunnel gives it back). */
  slot: TunnelSlot;
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
  const { metrics } = deps;
  let rt = deps.rt;
  let decision = authorize(rt.view.cluster, target.identity.principal, target.service, target.port);
  if (!decision.allow && decision.reason === "unknown_service" && await deps.refreshMap?.()) {
    // A service the operator just added: the nodes' newer map may know it (its reload
    // replaced deps.rt).
    rt = deps.rt;
    decision = authorize(rt.view.cluster, target.identity.principal, target.service, target.port);
  }
  const cluster = rt.view.cluster;
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

/** A tunnel reply normally comes within a round trip plus the node's dial to a LAN target;
 * past this the node is asked whether it is alive at all (a ping, unless something else
 * arrived on the connection), so a request to a node that just died is refused within
 * ~1.3 s (this + PING_TIMEOUT_MS) instead of waiting for the idle timeout. */
export const LIVENESS_CHECK_AFTER_MS = 250;

/** Opens a tunnel stream to the node, once the caller has decided it may (openServiceTunnel,
 * or the SOCKS gate). A shared connection may have died since its last use (node restarted,
 * network change): that shows as its close, and the request is retried once on a fresh
 * connection. A refusal by the node is final. A stream's failure never closes the connection:
 * the other tunnels on it are not its business. */
export async function openTunnel(
  peers: PeerPool,
  identity: LocalIdentity,
  node: string,
  target: ServiceTarget,
  trace: PhaseTrace = NO_TRACE,
): Promise<OpenResult> {
  for (let attempt = 1;; attempt++) {
    let slot: TunnelSlot;
    // Not AbortSignal.timeout: its timer outlives the wait by seconds and, on firing, builds
    // a DOMException for every tunnel (~1% of an agent's CPU per CONNECT).
    const giveUp = new AbortController();
    const timer = setTimeout(() => giveUp.abort(), TUNNEL_REPLY_TIMEOUT_MS);
    try {
      slot = await peers.tunnelStream(identity, node, giveUp.signal);
      trace.mark("stream_opened");
    } catch (e) {
      if (e instanceof PeerError) return refusal(PEER_REPLY[e.code], e.code, e.message);
      if (attempt < 2) continue; // the connection closed under us: once more on a fresh one
      return refusal(Reply.NETWORK_UNREACHABLE, "connection_lost", `to ${node}: ${e}`);
    } finally {
      clearTimeout(timer);
    }
    const r = await requestTunnel(peers, identity, slot, node, target);
    trace.mark("node_replied");
    if (!("retry" in r)) return r;
    if (attempt >= 2) return refusal(Reply.NETWORK_UNREACHABLE, "connection_lost", r.retry);
  }
}

async function requestTunnel(
  peers: PeerPool,
  identity: LocalIdentity,
  slot: TunnelSlot,
  node: string,
  target: ServiceTarget,
): Promise<OpenResult | { retry: string }> {
  const sentAt = performance.now();
  const notAnswering = new AbortController();
  let settled = false;
  const check = setTimeout(async () => {
    const alive = await peers.answering(identity, node, slot.conn, sentAt);
    if (!alive && !settled) notAnswering.abort();
  }, LIVENESS_CHECK_AFTER_MS);
  try {
    const { reply, leftover, reader, writer } = await exchange(
      slot.stream,
      encodeTunnelRequest({ service: target.service, port: target.port }),
      {
        timeoutMs: TUNNEL_REPLY_TIMEOUT_MS,
        keepOpen: true,
        signal: notAnswering.signal,
        what: `tunnel request to ${node}`,
      },
    );
    slot.answered(performance.now() - sentAt);
    if (reply.status !== TunnelStatus.OK) {
      slot.release();
      const reason = `node_${tunnelStatusName(reply.status)}`;
      return refusal(socksReplyFor(reply.status), reason, `${node}: ${reply.message}`);
    }
    const { readable, writable } = slot.stream;
    return { ok: true, stream: { readable, writable, reader, writer }, leftover, node, slot };
  } catch (e) {
    slot.release();
    const code = e instanceof ExchangeError ? e.code : "stream";
    const { closed, timedOut } = await closeState(slot.conn);
    peers.requestFailed(identity, node, `tunnel request: ${(e as Error).message}`);
    if (code === "aborted" || timedOut) {
      // The node stopped answering: say so now rather than wait on a new handshake.
      return refusal(Reply.NETWORK_UNREACHABLE, "node_down", `${node} is not answering`);
    }
    // A dead shared connection: worth one more attempt on a fresh one.
    if (closed) return { retry: `to ${node}: ${(e as Error).message}` };
    if (code === "timeout") {
      return refusal(Reply.TTL_EXPIRED, "node_timeout", `${node} did not answer in time`);
    }
    return refusal(
      Reply.NETWORK_UNREACHABLE,
      "stream_failed",
      `to ${node}: ${(e as Error).message}`,
    );
  } finally {
    settled = true;
    clearTimeout(check);
  }
}

/** Gives back a tunnel that will not be carried (its client went away before the reply). */
export function abandonTunnel(opened: OpenedTunnel): void {
  const { stream } = opened;
  (stream.writer ?? stream.writable).abort().catch(() => {});
  (stream.reader ?? stream.readable).cancel().catch(() => {});
  opened.slot.release();
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
  /** The set-up's stamps so far; the first bytes each way are stamped here. */
  trace?: PhaseTrace;
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
  const trace = o.trace ?? NO_TRACE;
  try {
    const r = await relay(tcp, opened.stream, {
      tcpLeftover: o.tcpLeftover,
      streamLeftover: opened.leftover,
      onBytes: (dir, n) => {
        if (trace.enabled) trace.mark(dir === "sent" ? "first_byte_read" : "first_byte_written");
        if (dir === "received") opened.slot.heard();
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
    if (trace.enabled) log.info("trace.phases", traceFields("client", trace));
    return r;
  } finally {
    untrack();
    opened.slot.release();
    metrics.tunnelsOpen.add({ side: "client" }, -1);
    deps.counts.open--;
  }
}

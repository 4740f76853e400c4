/**
 * Opens this agent's QUIC endpoints (the node's listening one, and the one its outgoing
 * connections share) and raises their UDP buffers to `transport.udp_buffer_bytes`:
 * SO_RCVBUFFORCE/SO_SNDBUFFORCE where privileged, else SO_RCVBUF/SO_SNDBUF (capped by
 * net.core.rmem_max/wmem_max). Logs `udp.buffer` with what the kernel gave, and one
 * `udp.buffer_small` warning with the sysctl to run when that is below the target.
 *
 * Only Linux can find the socket (lib/socket_options.ts): elsewhere the kernel default stays
 * and `udp.buffer_unset` says why (macOS raises it up to kern.ipc.maxsockbuf for a process
 * that asks, but Deno gives no handle to ask with).
 */
import type { EventLog } from "../lib/log.ts";
import {
  findSocketFd,
  getIntOption,
  isNotPermitted,
  setIntOption,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_SNDBUF,
  SO_SNDBUFFORCE,
  SocketOptionError,
} from "../lib/socket_options.ts";
import { assessUdpBuffer, needsRaise, sysctlCommand } from "../lib/udp_buffer.ts";
import type { AgentMetrics } from "./agent_metrics.ts";

export type EndpointSide = "server" | "client";

/** One `udp.buffer_small` per process: a node's two endpoints share the same fix. */
let warnedSmall = false;

/** A QUIC endpoint bound to host:port (port 0: any) with its buffers raised. */
export function openQuicEndpoint(
  bind: { host: string; port: number },
  side: EndpointSide,
  targetBytes: number,
  log: EventLog,
  metrics: AgentMetrics,
): Deno.QuicEndpoint {
  const endpoint = new Deno.QuicEndpoint({ hostname: bind.host, port: bind.port });
  raiseUdpBuffers(endpoint.addr.port, side, targetBytes, log, metrics);
  return endpoint;
}

/** The endpoint every outgoing connection shares: one socket (one buffer to raise) on any
 * port, dual-stack where the host has IPv6, IPv4 only where it does not. */
export function openClientEndpoint(
  targetBytes: number,
  log: EventLog,
  metrics: AgentMetrics,
): Deno.QuicEndpoint {
  try {
    return openQuicEndpoint({ host: "::", port: 0 }, "client", targetBytes, log, metrics);
  } catch (e) {
    if (!(e instanceof Deno.errors.AddrNotAvailable) && !/address/i.test(String(e))) throw e;
    return openQuicEndpoint({ host: "0.0.0.0", port: 0 }, "client", targetBytes, log, metrics);
  }
}

function raiseUdpBuffers(
  port: number,
  side: EndpointSide,
  target: number,
  log: EventLog,
  metrics: AgentMetrics,
): void {
  try {
    const fd = findSocketFd({ protocol: "udp", localPort: port });
    const method = raise(fd, SO_RCVBUFFORCE, SO_RCVBUF, target);
    raise(fd, SO_SNDBUFFORCE, SO_SNDBUF, target);
    const v = assessUdpBuffer({
      target,
      reportedReceive: getIntOption(fd, SO_RCVBUF),
      reportedSend: getIntOption(fd, SO_SNDBUF),
    });
    metrics.udpReceiveBuffer.set({ side }, v.receiveBytes);
    log.info("udp.buffer", {
      side,
      port,
      receive_bytes: v.receiveBytes,
      send_bytes: v.sendBytes,
      target_bytes: target,
      method,
    });
    if (v.warning && !warnedSmall) {
      warnedSmall = true;
      log.warn("udp.buffer_small", {
        side,
        receive_bytes: v.receiveBytes,
        target_bytes: target,
        fix: sysctlCommand(target),
        detail: v.warning,
      });
    }
  } catch (e) {
    // The buffer is worth having, not worth refusing to start over (no /proc read
    // permission, a sandbox): the agent runs on with the kernel's default and says so.
    log.warn("udp.buffer_unset", {
      side,
      port,
      reason: e instanceof SocketOptionError ? e.code : "error",
      detail: `${(e as Error).message ?? e}: the kernel's default UDP buffer stays, so fast ` +
        `transfers may lose packets while the agent is busy`,
    });
  }
}

/** Sets one buffer to `target` unless it is already that large: `force` when privileged
 * (past net.core.*mem_max), else `capped` by the sysctl, or `kept` as it was. */
function raise(fd: number, force: number, capped: number, target: number) {
  if (!needsRaise(getIntOption(fd, capped), target)) return "kept";
  try {
    setIntOption(fd, force, target);
    return "force";
  } catch (e) {
    if (!isNotPermitted(e)) throw e;
  }
  setIntOption(fd, capped, target);
  return "capped";
}

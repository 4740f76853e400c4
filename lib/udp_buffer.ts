/**
 * The QUIC socket's kernel buffers: what to ask for, how to read what we got, and what to tell
 * the operator. Pure; agent/quic_endpoint.ts makes the calls (lib/socket_options.ts).
 *
 * Why: while JavaScript runs, packets wait in the UDP receive buffer; the kernel default
 * (208 KiB) overflowed ~950 times in one 64 MiB transfer on a 40 ms link (issue 10), and each
 * overflow is a loss to the congestion controller.
 */

/** quic-go's documented target, the figure operators already know: a burst of ~60 ms at
 * 1 Gbit/s. With it no overflow was seen at 100 Mbit/s. */
export const DEFAULT_UDP_BUFFER_BYTES = 7_500_000;

/** The command that lets an unprivileged process get `bytes` (SO_RCVBUF is capped by these). */
export function sysctlCommand(bytes: number): string {
  return `sysctl -w net.core.rmem_max=${bytes} net.core.wmem_max=${bytes}`;
}

/** /etc/sysctl.d/60-florete.conf, installed by `florctl enroll node` on Linux. */
export function sysctlDropIn(bytes: number): string {
  return [
    "# Installed by florctl enroll: lets flor raise its QUIC socket's buffers (flor.yaml",
    "# transport.udp_buffer_bytes) without overflows at high rates. Safe to keep.",
    `net.core.rmem_max = ${bytes}`,
    `net.core.wmem_max = ${bytes}`,
    "",
  ].join("\n");
}

/** Where enroll installs it (lib/platform.ts has it as the node's `sysctl` path). */
export const SYSCTL_DROP_IN_PATH = "/etc/sysctl.d/60-florete.conf";

/** What the kernel reported after the change (getsockopt values, which Linux doubles). */
export interface UdpBufferReport {
  target: number;
  /** getsockopt(SO_RCVBUF) / getsockopt(SO_SNDBUF) as reported. */
  reportedReceive: number;
  reportedSend: number;
}

export interface UdpBufferVerdict {
  /** Usable sizes: Linux reports twice what was set (it counts its bookkeeping). */
  receiveBytes: number;
  sendBytes: number;
  /** Set when either is below the target: one warning with the fix. */
  warning?: string;
}

export function assessUdpBuffer(r: UdpBufferReport): UdpBufferVerdict {
  const receiveBytes = Math.floor(r.reportedReceive / 2);
  const sendBytes = Math.floor(r.reportedSend / 2);
  const v: UdpBufferVerdict = { receiveBytes, sendBytes };
  if (receiveBytes < r.target || sendBytes < r.target) {
    v.warning = `UDP buffers are ${receiveBytes} (receive) / ${sendBytes} (send) bytes, below ` +
      `transport.udp_buffer_bytes ${r.target}: packets will be dropped at high rates. Run ` +
      `'${sysctlCommand(r.target)}' (as root; florctl enroll node installs ` +
      `${SYSCTL_DROP_IN_PATH}) and restart flor, or run flor with CAP_NET_ADMIN`;
  }
  return v;
}

/** Whether to change a buffer at all: never shrink one that is already large enough. */
export function needsRaise(reported: number, target: number): boolean {
  return Math.floor(reported / 2) < target;
}

export interface UdpCounters {
  /** Datagrams dropped because a socket's receive buffer was full (whole network namespace). */
  receiveBufferErrors: number;
  sendBufferErrors: number;
}

/** The Udp rows of /proc/net/snmp (a header row of names, then a row of values). */
export function parseUdpSnmp(text: string): UdpCounters | undefined {
  const rows = text.split("\n").filter((l) => l.startsWith("Udp: "));
  if (rows.length < 2) return undefined;
  const names = rows[0].split(/\s+/).slice(1);
  const values = rows[1].split(/\s+/).slice(1).map(Number);
  const get = (n: string) => {
    const i = names.indexOf(n);
    return i < 0 || !Number.isFinite(values[i]) ? undefined : values[i];
  };
  const rcv = get("RcvbufErrors");
  if (rcv === undefined) return undefined;
  return { receiveBufferErrors: rcv, sendBufferErrors: get("SndbufErrors") ?? 0 };
}

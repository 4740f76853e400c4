/**
 * Connects to a service's TCP target on behalf of a tunnel and says, as a tunnel status,
 * why it could not.
 */
import type { HostPort } from "../lib/host_port.ts";
import { TunnelStatus } from "../lib/tunnel_header.ts";

/** A target that neither answers nor refuses within this is reported as a timeout (SOCKS
 * 0x06) rather than holding the client; 5 s covers a LAN host waking from sleep. */
export const TARGET_CONNECT_TIMEOUT_MS = 5_000;

export type DialResult =
  | { ok: true; conn: Deno.TcpConn }
  | { ok: false; status: TunnelStatus; message: string };

export async function dialTarget(
  target: HostPort,
  timeoutMs = TARGET_CONNECT_TIMEOUT_MS,
): Promise<DialResult> {
  // Not AbortSignal.timeout: its timer outlives the connect by seconds and, on firing,
  // builds a DOMException for every tunnel (~1% of the node agent's CPU per CONNECT).
  const giveUp = new AbortController();
  const signal = giveUp.signal;
  const timer = setTimeout(() => giveUp.abort(), timeoutMs);
  try {
    const conn = await Deno.connect({ hostname: target.host, port: target.port, signal });
    conn.setNoDelay(true);
    return { ok: true, conn };
  } catch (e) {
    const where = `${target.host}:${target.port}`;
    if (e instanceof Deno.errors.ConnectionRefused) {
      return { ok: false, status: TunnelStatus.TARGET_REFUSED, message: `${where} refused` };
    }
    if (signal.aborted || e instanceof Deno.errors.TimedOut) {
      return {
        ok: false,
        status: TunnelStatus.TARGET_TIMEOUT,
        message: `${where} did not answer in ${timeoutMs} ms`,
      };
    }
    return {
      ok: false,
      status: TunnelStatus.TARGET_UNREACHABLE,
      message: `${where}: ${(e as Error).message}`,
    };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Which Host headers the agent's local HTTP endpoints (metrics, health, status, control and
 * whatever else serves on that address) answer. Pure: the header, the listening address and
 * the configured names in, a decision out.
 *
 * Why: a web page the operator visits can point its own DNS name at 127.0.0.1 (DNS
 * rebinding) and then read /status — identities, peers, source addresses — as same-origin.
 * The browser still sends the attacker's name as Host, so answering only names that mean
 * this agent stops it. IP literals cannot be rebound (the page's origin would be that IP),
 * so loopback literals are always fine, and any literal is when listening on every address.
 */
import { parseIp } from "../lib/cidr.ts";
import { isLoopback } from "../lib/host_port.ts";

export type HostDecision =
  | { ok: true }
  | { ok: false; status: 421 | 400; message: string };

export interface HostPolicy {
  /** The host part of the listening address (e.g. 127.0.0.1, ::1, 0.0.0.0). */
  listenHost: string;
  /** Extra names from flor.yaml (metrics.allowed_hosts), e.g. the name Prometheus scrapes. */
  allowedHosts: readonly string[];
}

/** The host of a Host header value: `name`, `name:port`, `[v6]` or `[v6]:port`, lowercased. */
function _hostOf(header: string): string | undefined {
  const h = header.trim().toLowerCase();
  const v6 = /^\[([0-9a-f:.]+)\](?::\d{1,5})?$/.exec(h);
  if (v6) return v6[1];
  const m = /^([a-z0-9._-]+?)\.?(?::\d{1,5})?$/.exec(h);
  return m ? m[1] : undefined;
}

export function checkHost(header: string | null, policy: HostPolicy): HostDecision {
  if (header === null) {
    return { ok: false, status: 400, message: "bad request: a Host header is required\n" };
  }
  const host = _hostOf(header);
  const listen = policy.listenHost.toLowerCase().replace(/^\[|\]$/g, "");
  const wildcard = listen === "0.0.0.0" || listen === "::";
  if (
    host !== undefined && (
      host === listen || isLoopback(host) ||
      (wildcard && parseIp(host) !== undefined) ||
      policy.allowedHosts.some((a) => a.toLowerCase() === host)
    )
  ) {
    return { ok: true };
  }
  return {
    ok: false,
    status: 421,
    message: `misdirected request: Host '${header.slice(0, 100)}' is not this agent's ` +
      `address; to use that name, add it to metrics.allowed_hosts in flor.yaml\n`,
  };
}

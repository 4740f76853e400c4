/**
 * The proxy auto-config file a user agent serves at /proxy.pac on its local HTTP address:
 * `*.flor` names go to its SOCKS5 port, everything else directly, so a browser pointed at one
 * URL reaches cluster services without routing the rest of the web through the mesh. Pure.
 */
import { formatHostPort, type HostPort } from "../lib/host_port.ts";

/** The path browsers are given (README: Browsers and shells). */
export const PAC_PATH = "/proxy.pac";
/** The MIME type browsers and OS proxy settings expect for a PAC file. */
export const PAC_CONTENT_TYPE = "application/x-ns-proxy-autoconfig";

export interface PacInput {
  /** The agent's SOCKS5 address (loopback for a user agent). */
  socks: HostPort;
  cluster: string;
  /** `user:alice`: who the browser's *.flor requests speak as (a comment only). */
  principal: string;
}

/**
 * Both `SOCKS5` and `SOCKS` entries: current browsers take the first; older PAC engines
 * (Safari, Windows WinHTTP) know only `SOCKS`. The suffix test is plain string code rather
 * than PAC helpers such as dnsDomainIs, so every engine evaluates it the same way and it
 * never triggers a DNS lookup.
 */
export function pacFile(p: PacInput): string {
  const addr = formatHostPort(p.socks);
  return `// Florete (cluster ${p.cluster}): *.flor names go through the local agent's SOCKS5 at
// ${addr} as ${p.principal}; everything else goes directly.
function FindProxyForURL(url, host) {
  var h = String(host).toLowerCase();
  if (h.charAt(h.length - 1) === ".") h = h.substring(0, h.length - 1);
  if (h.length > 5 && h.substring(h.length - 5) === ".flor") {
    return "SOCKS5 ${addr}; SOCKS ${addr}";
  }
  return "DIRECT";
}
`;
}

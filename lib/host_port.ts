/**
 * `host:port`: the one parser, formatter and loopback test for the addresses in cluster.yaml
 * (endpoints, targets, gateway listens), flor.yaml (listeners) and command-line flags.
 * Pure: text in, a typed address or an Error that says how to write one out.
 *
 * Hosts come back canonical (DNS names lowercase, IPv6 in its shortest form), so two
 * spellings of one address compare equal after parsing.
 */

import { isLoopbackIp } from "./cidr.ts";

export interface HostPort {
  host: string;
  port: number;
}

const _EXAMPLE = "write HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080";

/** Parses `host:port` or `[v6]:port`; throws Error with an operator message. */
export function parseHostPort(text: string): HostPort {
  let host: string;
  let portText: string;
  if (text.startsWith("[")) {
    const end = text.indexOf("]");
    if (end < 0) throw new Error(`'${text}': missing ']' after the IPv6 address; ${_EXAMPLE}`);
    if (text[end + 1] !== ":") throw new Error(`'${text}' has no port; ${_EXAMPLE}`);
    host = _ipv6(text.slice(1, end), text);
    portText = text.slice(end + 2);
  } else {
    const i = text.lastIndexOf(":");
    if (i < 0) throw new Error(`'${text}' has no port; ${_EXAMPLE}`);
    if (text.slice(0, i).includes(":")) {
      throw new Error(`'${text}': put an IPv6 address in brackets, e.g. [::1]:8080`);
    }
    host = _hostName(text.slice(0, i), text);
    portText = text.slice(i + 1);
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    throw new Error(`'${text}': the port must be a number from 1 to 65535; ${_EXAMPLE}`);
  }
  return { host, port: Number(portText) };
}

/** `[v6]:port` or `host:port`; parseHostPort reads it back to the same value. */
export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(":") ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** Two addresses are the same when their canonical forms are. */
export function sameHostPort(a: HostPort, b: HostPort): boolean {
  return a.host === b.host && a.port === b.port;
}

/** Host names in configuration that mean "this machine only": localhost, 127/8, ::1
 * (bracketed or not, any case). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || isLoopbackIp(h);
}

function _ipv6(host: string, text: string): string {
  const bad = new Error(`'${text}': '${host}' is not an IPv6 address, e.g. [::1]:8080`);
  if (!/^[0-9a-fA-F:.]+$/.test(host) || !host.includes(":")) throw bad;
  try {
    // The URL parser is the platform's IPv6 grammar; it also gives the canonical form.
    return new URL(`http://[${host}]/`).hostname.slice(1, -1);
  } catch {
    throw bad;
  }
}

function _hostName(host: string, text: string): string {
  if (host === "") throw new Error(`'${text}' has no host; write HOST:PORT, e.g. 127.0.0.1:8080`);
  if (/^[0-9.]+$/.test(host)) {
    const parts = host.split(".");
    if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
      throw new Error(`'${text}': '${host}' is not an IPv4 address (four numbers 0-255)`);
    }
    return host;
  }
  const label = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;
  if (host.length > 253 || !host.split(".").every((l) => label.test(l))) {
    throw new Error(
      `'${text}': '${host}' is not a host name; use an IP address or a DNS name ` +
        "(letters, digits, '-' and '.')",
    );
  }
  return host.toLowerCase();
}

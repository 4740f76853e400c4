/**
 * CIDR ranges and literal IP addresses (no DNS): parsing, membership and the private /
 * loopback classification used by policy and listener checks.
 *
 * IPv4-mapped IPv6 addresses (::ffff:1.2.3.4, what a dual-stack socket reports for an IPv4
 * peer) are the IPv4 address everywhere in this module, so a rule written as 10.0.0.0/8
 * matches the peer however the socket spelled it. An IPv6 range never matches an IPv4
 * address, not even ::/0.
 */

export interface Cidr {
  family: 4 | 6;
  /** Network address, 4 or 16 bytes, host bits zero. */
  bits: Uint8Array;
  prefix: number;
  /** Canonical form, e.g. "192.168.1.0/24", "fd00::/8" (RFC 5952 for IPv6). */
  text: string;
}

const EXAMPLES = "192.168.1.0/24, 10.0.0.5, fd00::/8 or ::1";

/**
 * "192.168.1.0/24", "10.0.0.5" (= /32), "fd00::/8", "::1" (= /128). Throws an Error that
 * tells the operator what is wrong and shows an example for anything else, including host
 * bits set beyond the prefix and prefixes out of range. A range written inside the
 * IPv4-mapped block (::ffff:10.0.0.0/104) becomes the IPv4 range (10.0.0.0/8).
 */
export function parseCidr(text: string): Cidr {
  if (text === "") throw new Error(`empty address range: write one such as ${EXAMPLES}`);
  const slash = text.indexOf("/");
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? undefined : text.slice(slash + 1);

  const raw = _parseRaw(addrText);
  if (raw === undefined) {
    throw new Error(
      `"${text}" is not an address range: ${_whyNotAddress(addrText)}; ` +
        `write one such as ${EXAMPLES}`,
    );
  }
  const max = raw.length * 8;
  let prefix = max;
  if (prefixText !== undefined) {
    if (!/^\d{1,3}$/.test(prefixText)) {
      throw new Error(
        `"${text}": prefix "${prefixText}" is not a number of bits: write e.g. ` +
          (raw.length === 4 ? "192.168.1.0/24" : "fd00::/8"),
      );
    }
    prefix = Number(prefixText);
    if (prefix > max) {
      throw new Error(
        `"${text}": prefix /${prefix} is out of range, IPv${raw.length === 4 ? 4 : 6} ` +
          `prefixes go from /0 to /${max}: write e.g. ` +
          (raw.length === 4 ? "192.168.1.0/24" : "fd00::/8"),
      );
    }
  }

  let bits = raw;
  if (raw.length === 16 && prefix >= 96 && _isMapped(raw)) {
    bits = raw.slice(12);
    prefix -= 96;
  }
  const network = _mask(bits, prefix);
  const canonical = `${_format(network)}/${prefix}`;
  if (!_equal(network, bits)) {
    throw new Error(
      `"${text}" has host bits set beyond the /${prefix} prefix: write ${canonical} for the ` +
        `range, or ${_format(bits)}/${bits.length * 8} for the single address`,
    );
  }
  return { family: bits.length === 4 ? 4 : 6, bits: network, prefix, text: canonical };
}

/**
 * Parses a literal IPv4 or IPv6 address (no brackets, no zone, no prefix) to bytes, or
 * undefined. IPv4 octets with leading zeros ("010.0.0.1") are refused because some tools
 * read them as octal. IPv4-mapped IPv6 comes back as family 4 with 4 bytes.
 */
export function parseIp(text: string): { family: 4 | 6; bytes: Uint8Array } | undefined {
  const raw = _parseRaw(text);
  if (raw === undefined) return undefined;
  if (raw.length === 4) return { family: 4, bytes: raw };
  if (_isMapped(raw)) return { family: 4, bytes: raw.slice(12) };
  return { family: 6, bytes: raw };
}

/** False for an unparsable address and for an address of the other family. */
export function cidrContains(c: Cidr, ip: string): boolean {
  const addr = parseIp(ip);
  return addr !== undefined && _inRange(c, addr.family, addr.bytes);
}

export function anyContains(list: readonly Cidr[], ip: string): boolean {
  const addr = parseIp(ip);
  return addr !== undefined && list.some((c) => _inRange(c, addr.family, addr.bytes));
}

const LOOPBACK: readonly Cidr[] = ["127.0.0.0/8", "::1"].map((c) => parseCidr(c));
const PRIVATE_OR_LOOPBACK: readonly Cidr[] = [
  "127.0.0.0/8",
  "::1",
  "10.0.0.0/8", // RFC 1918
  "172.16.0.0/12",
  "192.168.0.0/16",
  "100.64.0.0/10", // RFC 6598 carrier-grade NAT
  "169.254.0.0/16", // link-local
  "fe80::/10",
  "fc00::/7", // unique local
].map((c) => parseCidr(c));

/**
 * Loopback (127/8, ::1), RFC 1918 (10/8, 172.16/12, 192.168/16), CGNAT 100.64/10,
 * link-local (169.254/16, fe80::/10), ULA fc00::/7. False for anything unparsable
 * (hostnames, bracketed or zoned literals), so callers resolve and strip those first.
 */
export function isPrivateOrLoopback(ip: string): boolean {
  return anyContains(PRIVATE_OR_LOOPBACK, ip);
}

export function isLoopbackIp(ip: string): boolean {
  return anyContains(LOOPBACK, ip);
}

function _inRange(c: Cidr, family: 4 | 6, bytes: Uint8Array): boolean {
  if (family !== c.family) return false;
  const whole = c.prefix >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== c.bits[i]) return false;
  const rest = c.prefix & 7;
  if (rest === 0) return true;
  const m = (0xff << (8 - rest)) & 0xff;
  return (bytes[whole] & m) === c.bits[whole];
}

function _mask(bytes: Uint8Array, prefix: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    out[i] = bytes[i] & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

function _equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** ::ffff:0:0/96 */
function _isMapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** 4 or 16 bytes exactly as written (no unmapping), or undefined. */
function _parseRaw(text: string): Uint8Array | undefined {
  return text.includes(":") ? _parseV6(text) : _parseV4(text);
}

function _parseV4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    if (!/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > 255) return undefined;
    out[i] = Number(p);
  }
  return out;
}

function _parseV6(text: string): Uint8Array | undefined {
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = _groups(halves[0], halves.length === 1);
  const tail = halves.length === 2 ? _groups(halves[1], true) : [];
  if (head === undefined || tail === undefined) return undefined;
  const written = head.length + tail.length;
  // "::" stands for at least one zero group; without it all eight must be written.
  if (halves.length === 2 ? written > 7 : written !== 8) return undefined;
  const groups = [...head, ...new Array<number>(8 - written).fill(0), ...tail];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** Colon-separated hex groups; a dotted IPv4 tail (two groups) only where `last`. */
function _groups(part: string, last: boolean): number[] | undefined {
  if (part === "") return [];
  const pieces = part.split(":");
  const out: number[] = [];
  for (let i = 0; i < pieces.length; i++) {
    const p = pieces[i];
    if (last && i === pieces.length - 1 && p.includes(".")) {
      const v4 = _parseV4(p);
      if (v4 === undefined) return undefined;
      out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    } else if (/^[0-9A-Fa-f]{1,4}$/.test(p)) {
      out.push(parseInt(p, 16));
    } else {
      return undefined;
    }
  }
  return out;
}

function _format(b: Uint8Array): string {
  return b.length === 4 ? b.join(".") : formatIpv6(b);
}

/** RFC 5952 text for 16 address bytes: lowercase hex, no leading zeros, the longest run
 * (first on a tie) of two or more zero groups as "::". Mapped IPv4 stays in hex, as the
 * WHATWG URL serializer writes it. */
export function formatIpv6(bytes: Uint8Array): string {
  if (bytes.length !== 16) throw new RangeError(`an IPv6 address is 16 bytes, got ${bytes.length}`);
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i] << 8) | bytes[i + 1]);
  let bestStart = -1;
  let bestLength = 1; // a single zero group is never compressed
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return hex(groups.slice(0, bestStart)) + "::" + hex(groups.slice(bestStart + bestLength));
}

/** A hint for the common ways an address is mistyped in config. */
function _whyNotAddress(a: string): string {
  if (a === "") return "the address before the / is missing";
  if (a.trim() !== a) return "remove the surrounding spaces";
  if (a.startsWith("[") || a.endsWith("]")) return "drop the brackets around the IPv6 address";
  if (a.includes("%")) return "zone indexes (%eth0) are not allowed";
  if (/^[\d.]+$/.test(a) && a.split(".").some((p) => /^0\d/.test(p))) {
    return "an octet has a leading zero, which some tools read as octal";
  }
  if (a.includes(":")) return `"${a}" is not a valid IPv6 address`;
  if (/^[\d.]+$/.test(a)) return `"${a}" is not four octets 0-255`;
  return `"${a}" is not an IP address (host names are not allowed)`;
}

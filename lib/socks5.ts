/**
 * SOCKS5 codec: RFC 1928 (greeting, CONNECT request, reply) and RFC 1929
 * (username/password sub-negotiation).
 *
 * Sans-I/O: this module only turns bytes into values and values into bytes. It has no
 * sockets, timers or `Deno.*`, so every split, truncation and malformed message is a plain
 * unit test, and the agent and the gateway share one implementation. The I/O layer that
 * drives it must:
 *
 * - Keep one buffer per connection, bounded by the `MAX_*_BYTES` constant of the message it
 *   expects next; no valid message is larger, so a parser never asks for more than that.
 * - Call the parser with everything buffered. On `{ done: false, need }`, read until the
 *   buffer holds at least `need` bytes (need is a lower bound on the total message size,
 *   never more than the message can take, so waiting for it cannot deadlock) and call again
 *   with the whole buffer. EOF before that is a client that gave up mid-handshake.
 * - On `{ done: true, size }`, consume `size` bytes and keep the rest: a client may send the
 *   next message without waiting, and bytes after the request are the first payload bytes
 *   of the tunnelled stream, which must be forwarded, not dropped.
 * - On `Socks5Error`, write `encodeReply(err.reply)` if `reply` is set, then close; else
 *   just close. Errors in the greeting and the sub-negotiation never carry a reply: reply
 *   codes belong to the request phase.
 * - Enforce a handshake deadline itself: the codec has no clock, and a client that sends
 *   one byte a minute is indistinguishable from a slow one without it.
 *
 * A connection's first message is read with `parseHello`, which also reads a SOCKS4/4a
 * request so the agent can answer it with the SOCKS4 rejection (`encodeSocks4Rejection`):
 * clients then report "rejected" instead of a bare disconnect.
 *
 * Each field is checked as soon as all its bytes are present, so garbage is refused
 * without waiting for more of it; consequently a prefix of a message either needs more
 * bytes or fails with the same error as the whole message.
 */
import { formatIpv6 } from "./cidr.ts";

export { formatIpv6 };

export const SOCKS_VERSION = 5;
/** RFC 1929 sub-negotiation version: not the SOCKS version. */
export const USERPASS_VERSION = 1;

export const Reply = {
  SUCCEEDED: 0x00,
  GENERAL_FAILURE: 0x01,
  NOT_ALLOWED: 0x02,
  NETWORK_UNREACHABLE: 0x03,
  HOST_UNREACHABLE: 0x04,
  CONNECTION_REFUSED: 0x05,
  TTL_EXPIRED: 0x06,
  COMMAND_NOT_SUPPORTED: 0x07,
  ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
} as const;
export type ReplyCode = typeof Reply[keyof typeof Reply];

export const Method = { NO_AUTH: 0x00, USERNAME_PASSWORD: 0x02, NO_ACCEPTABLE: 0xff } as const;
export const Command = { CONNECT: 0x01, BIND: 0x02, UDP_ASSOCIATE: 0x03 } as const;
export const AddressType = { IPV4: 0x01, DOMAIN: 0x03, IPV6: 0x04 } as const;

/**
 * Every way an incoming message can be malformed, with the reply sent before closing
 * (undefined: close without a reply). One table, so a code and its reply cannot drift.
 *
 * - bad_reserved replies GENERAL_FAILURE: the client got VER and CMD right, so a reply lets
 *   it report a reason instead of a bare reset.
 * - empty_domain and bad_domain reply HOST_UNREACHABLE: no service can have that name.
 * - bad_port replies GENERAL_FAILURE: port 0 is a malformed request, not an unreachable host.
 */
export const ERROR_REPLIES = {
  bad_version: undefined,
  no_methods: undefined,
  bad_auth_version: undefined,
  empty_username: undefined,
  bad_utf8: undefined,
  bad_reserved: Reply.GENERAL_FAILURE,
  unsupported_command: Reply.COMMAND_NOT_SUPPORTED,
  unsupported_address_type: Reply.ADDRESS_TYPE_NOT_SUPPORTED,
  empty_domain: Reply.HOST_UNREACHABLE,
  bad_domain: Reply.HOST_UNREACHABLE,
  bad_port: Reply.GENERAL_FAILURE,
  socks4_too_long: undefined,
} as const satisfies Record<string, ReplyCode | undefined>;
export type Socks5ErrorCode = keyof typeof ERROR_REPLIES;

/** Every malformed input raises this and only this. `reply` is the SOCKS reply code to send
 * before closing when the protocol allows one (e.g. 0x07 for an unsupported command, 0x08 for
 * an unsupported address type); undefined means just close. */
export class Socks5Error extends Error {
  override name = "Socks5Error";
  readonly code: Socks5ErrorCode;
  readonly reply?: ReplyCode;

  constructor(code: Socks5ErrorCode, message: string) {
    super(message);
    this.code = code;
    this.reply = ERROR_REPLIES[code];
  }
}

/** Incremental parse result: either a complete value and how many bytes it used, or the
 * minimum TOTAL number of bytes needed before calling again (always > buf.length). */
export type Parsed<T> = { done: true; value: T; size: number } | { done: false; need: number };

export interface Greeting {
  methods: number[];
}
/** RFC 1929 (VER 0x01). */
export interface UserPass {
  username: string;
  password: string;
}
export type Address =
  | { type: "domain"; host: string }
  | { type: "ipv4"; host: string }
  | { type: "ipv6"; host: string };
export interface Request {
  command: number;
  address: Address;
  port: number;
}

/** SOCKS4 CONNECT or BIND (VN 0x04); `socks4a` when DSTIP is 0.0.0.x and a domain follows
 * the user id. Only its shape is kept: the agent answers every one with a rejection. */
export interface Socks4Request {
  command: number;
  port: number;
  socks4a: boolean;
}
/** The first message on a connection: a SOCKS5 greeting, or a SOCKS4 request to reject. */
export type Hello = { version: 5; greeting: Greeting } | { version: 4; request: Socks4Request };

/** VER NMETHODS METHODS[1..255]. */
export const MAX_GREETING_BYTES = 2 + 255;
/** VER ULEN UNAME[1..255] PLEN PASSWD[0..255]. */
export const MAX_USERPASS_BYTES = 1 + 1 + 255 + 1 + 255;
/** VER CMD RSV ATYP, then the longest address (LEN + 255-byte domain), then PORT. */
export const MAX_REQUEST_BYTES = 4 + 1 + 255 + 2;
/** SOCKS4 fields without a length byte (user id, 4a domain) end at a NUL; we read at most
 * this many bytes of each, as much as SOCKS5 allows for a name. */
const _SOCKS4_MAX_FIELD_BYTES = 255;
/** VN CD DSTPORT DSTIP, USERID NUL, and for 4a DOMAIN NUL. */
export const MAX_SOCKS4_REQUEST_BYTES = 8 + (_SOCKS4_MAX_FIELD_BYTES + 1) * 2;
/** Whichever of a greeting and a SOCKS4 request is longer. */
export const MAX_HELLO_BYTES = Math.max(MAX_GREETING_BYTES, MAX_SOCKS4_REQUEST_BYTES);

// Smallest complete messages: the `need` before the length bytes are known.
const _MIN_GREETING_BYTES = 2 + 1;
const _MIN_USERPASS_BYTES = 1 + 1 + 1 + 1;
const _MIN_REQUEST_BYTES = 4 + 1 + 1 + 2;

const _utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const _utf8Encoder = new TextEncoder();

function _more<T>(need: number): Parsed<T> {
  return { done: false, need };
}

function _hex(byte: number): string {
  return "0x" + byte.toString(16).padStart(2, "0");
}

function _checkVersion(version: number, what: string): void {
  if (version === SOCKS_VERSION) return;
  let hint = "the client is not speaking SOCKS5";
  if (version === 4) hint = "SOCKS4 is not supported: configure the client for SOCKS5";
  // 'C' (CONNECT), 'G' (GET), 'P' (POST...), 'H' (HEAD): an HTTP client aimed at this port.
  if ([0x43, 0x47, 0x50, 0x48].includes(version)) {
    hint = "this looks like HTTP: this port speaks SOCKS5, not an HTTP proxy";
  }
  throw new Socks5Error(
    "bad_version",
    `SOCKS ${what} has version ${_hex(version)}, expected 0x05: ${hint}`,
  );
}

function _decodeUtf8(bytes: Uint8Array, field: string): string {
  try {
    return _utf8.decode(bytes);
  } catch {
    // Never quote the bytes: the field may be a password.
    throw new Socks5Error("bad_utf8", `SOCKS ${field} is not valid UTF-8`);
  }
}

/** Letters, digits, '-', '.', '_': what a service name under `.flor` can contain. */
function _isHostByte(b: number): boolean {
  return (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x30 && b <= 0x39) ||
    b === 0x2d || b === 0x2e || b === 0x5f;
}

/** Parses the client's method offer: VER NMETHODS METHODS. */
export function parseGreeting(buf: Uint8Array): Parsed<Greeting> {
  if (buf.length >= 1) _checkVersion(buf[0], "greeting");
  if (buf.length < 2) return _more(_MIN_GREETING_BYTES);
  const count = buf[1];
  if (count === 0) {
    throw new Socks5Error("no_methods", "SOCKS greeting offers no authentication methods");
  }
  const size = 2 + count;
  if (buf.length < size) return _more(size);
  return { done: true, value: { methods: Array.from(buf.subarray(2, size)) }, size };
}

/** Parses a connection's first message: a SOCKS5 greeting, or (first byte 0x04) a SOCKS4 or
 * 4a request, read whole so the rejection is the client's next read (closing with its bytes
 * unread would reset the connection and lose the reply). Other versions: `bad_version`. */
export function parseHello(buf: Uint8Array): Parsed<Hello> {
  if (buf.length >= 1 && buf[0] === 4) {
    const r = parseSocks4Request(buf);
    return r.done ? { done: true, value: { version: 4, request: r.value }, size: r.size } : r;
  }
  const r = parseGreeting(buf);
  return r.done ? { done: true, value: { version: 5, greeting: r.value }, size: r.size } : r;
}

/** VN CD DSTPORT DSTIP USERID NUL [DOMAIN NUL]. */
export function parseSocks4Request(buf: Uint8Array): Parsed<Socks4Request> {
  if (buf.length >= 1 && buf[0] !== 4) {
    throw new Socks5Error(
      "bad_version",
      `SOCKS version 4 request has version ${_hex(buf[0])}, expected 0x04`,
    );
  }
  if (buf.length < 8) return _more(8 + 1);
  const userEnd = _socks4FieldEnd(buf, 8, "user id");
  if (userEnd < 0) return _more(buf.length + 1);
  const socks4a = buf[4] === 0 && buf[5] === 0 && buf[6] === 0 && buf[7] !== 0;
  let size = userEnd + 1;
  if (socks4a) {
    const domainEnd = _socks4FieldEnd(buf, size, "domain");
    if (domainEnd < 0) return _more(Math.max(buf.length, size) + 1);
    size = domainEnd + 1;
  }
  const port = (buf[2] << 8) | buf[3];
  return { done: true, value: { command: buf[1], port, socks4a }, size };
}

/** Index of the NUL ending the field that starts at `start`, or -1 if it has not arrived. */
function _socks4FieldEnd(buf: Uint8Array, start: number, field: string): number {
  const end = buf.subarray(start, start + _SOCKS4_MAX_FIELD_BYTES + 1).indexOf(0);
  if (end >= 0) return start + end;
  if (buf.length - start > _SOCKS4_MAX_FIELD_BYTES) {
    throw new Socks5Error(
      "socks4_too_long",
      `SOCKS version 4 ${field} is longer than ${_SOCKS4_MAX_FIELD_BYTES} bytes`,
    );
  }
  return -1;
}

/** Parses RFC 1929 credentials: VER(1) ULEN UNAME PLEN PASSWD. */
export function parseUserPass(buf: Uint8Array): Parsed<UserPass> {
  if (buf.length >= 1 && buf[0] !== USERPASS_VERSION) {
    throw new Socks5Error(
      "bad_auth_version",
      `SOCKS username/password version is ${_hex(buf[0])}, expected 0x01 (RFC 1929)`,
    );
  }
  if (buf.length < 2) return _more(_MIN_USERPASS_BYTES);
  const usernameEnd = 2 + buf[1];
  if (usernameEnd === 2) {
    throw new Socks5Error("empty_username", "SOCKS username is empty: send the principal name");
  }
  if (buf.length < usernameEnd) return _more(usernameEnd + 1);
  const username = _decodeUtf8(buf.subarray(2, usernameEnd), "username");
  if (buf.length < usernameEnd + 1) return _more(usernameEnd + 1);
  const size = usernameEnd + 1 + buf[usernameEnd];
  if (buf.length < size) return _more(size);
  const password = _decodeUtf8(buf.subarray(usernameEnd + 1, size), "password");
  return { done: true, value: { username, password }, size };
}

const _COMMAND_NAMES: Record<number, string> = {
  [Command.BIND]: "BIND",
  [Command.UDP_ASSOCIATE]: "UDP ASSOCIATE",
};

/** Parses VER CMD RSV ATYP DST.ADDR DST.PORT; only CONNECT is accepted. */
export function parseRequest(buf: Uint8Array): Parsed<Request> {
  if (buf.length >= 1) _checkVersion(buf[0], "request");
  if (buf.length >= 2 && buf[1] !== Command.CONNECT) {
    const name = _COMMAND_NAMES[buf[1]] ?? `command ${_hex(buf[1])}`;
    throw new Socks5Error(
      "unsupported_command",
      `SOCKS ${name} is not supported: only CONNECT (TCP) is`,
    );
  }
  if (buf.length >= 3 && buf[2] !== 0) {
    throw new Socks5Error(
      "bad_reserved",
      `SOCKS request reserved byte is ${_hex(buf[2])}, must be 0x00`,
    );
  }
  if (buf.length < 4) return _more(_MIN_REQUEST_BYTES);
  let addressStart = 4;
  let addressEnd: number;
  switch (buf[3]) {
    case AddressType.IPV4:
      addressEnd = addressStart + 4;
      break;
    case AddressType.IPV6:
      addressEnd = addressStart + 16;
      break;
    case AddressType.DOMAIN:
      if (buf.length < 5) return _more(_MIN_REQUEST_BYTES);
      if (buf[4] === 0) throw new Socks5Error("empty_domain", "SOCKS destination domain is empty");
      addressStart = 5;
      addressEnd = addressStart + buf[4];
      break;
    default:
      throw new Socks5Error(
        "unsupported_address_type",
        `SOCKS address type ${_hex(buf[3])} is not supported: use IPv4 (0x01), ` +
          `domain (0x03) or IPv6 (0x04)`,
      );
  }
  const size = addressEnd + 2;
  if (buf.length < addressEnd) return _more(size);
  const address = _parseAddress(buf[3], buf.subarray(addressStart, addressEnd));
  if (buf.length < size) return _more(size);
  const port = (buf[addressEnd] << 8) | buf[addressEnd + 1];
  if (port === 0) {
    throw new Socks5Error("bad_port", "SOCKS destination port is 0: use the service's port");
  }
  return { done: true, value: { command: Command.CONNECT, address, port }, size };
}

function _parseAddress(type: number, bytes: Uint8Array): Address {
  if (type === AddressType.IPV4) return { type: "ipv4", host: bytes.join(".") };
  if (type === AddressType.IPV6) return { type: "ipv6", host: formatIpv6(bytes) };
  const bad = bytes.findIndex((b) => !_isHostByte(b));
  if (bad >= 0) {
    throw new Socks5Error(
      "bad_domain",
      `SOCKS destination domain has byte ${_hex(bytes[bad])} at offset ${bad}: ` +
        `only letters, digits, '-', '.' and '_' are allowed`,
    );
  }
  return { type: "domain", host: String.fromCharCode(...bytes) };
}

/**
 * Picks the method to answer a greeting with. USERNAME_PASSWORD wins when both sides allow
 * it, so a client that offers credentials is identified by them rather than by the
 * listener's default identity; else NO_AUTH if both allow it; else NO_ACCEPTABLE (send it,
 * then close).
 */
export function chooseMethod(
  offered: readonly number[],
  accept: { noAuth: boolean; userPass: boolean },
): number {
  if (accept.userPass && offered.includes(Method.USERNAME_PASSWORD)) {
    return Method.USERNAME_PASSWORD;
  }
  if (accept.noAuth && offered.includes(Method.NO_AUTH)) return Method.NO_AUTH;
  return Method.NO_ACCEPTABLE;
}

function _checkByte(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 255) {
    throw new RangeError(`${what} must be an integer from 0 to 255, got ${value}`);
  }
}

/** [5, method]. */
export function encodeMethodSelection(method: number): Uint8Array {
  _checkByte(method, "SOCKS method");
  return Uint8Array.of(SOCKS_VERSION, method);
}

/** [1, 0] on success, [1, 1] on failure (RFC 1929: any non-zero status fails; then close). */
export function encodeUserPassStatus(ok: boolean): Uint8Array {
  return Uint8Array.of(USERPASS_VERSION, ok ? 0 : 1);
}

/** [5, code, 0, 1, 0,0,0,0, 0,0]: the bound address is always 0.0.0.0:0, since a client
 * of the mesh has no use for the agent's outbound address and it would leak topology. */
export function encodeReply(code: ReplyCode): Uint8Array {
  if (!(Object.values(Reply) as number[]).includes(code)) {
    throw new RangeError(`SOCKS reply code must be 0x00 to 0x08, got ${code}`);
  }
  return Uint8Array.of(SOCKS_VERSION, code, 0, AddressType.IPV4, 0, 0, 0, 0, 0, 0);
}

/** The SOCKS4 reply 0x5B "request rejected or failed": VN 0, CD 0x5B, DSTPORT and DSTIP
 * zero (ignored by clients on a rejection). */
export function encodeSocks4Rejection(): Uint8Array {
  return Uint8Array.of(0, 0x5b, 0, 0, 0, 0, 0, 0);
}

// Client-side encoders: for tests and for tools that speak SOCKS5 to an agent. They refuse
// (RangeError) anything the parsers above would not read back as the same value, except
// that they encode any command, since BIND and UDP ASSOCIATE are valid RFC 1928 requests.

/** VER NMETHODS METHODS, 1 to 255 methods. */
export function encodeGreeting(methods: readonly number[]): Uint8Array {
  if (methods.length < 1 || methods.length > 255) {
    throw new RangeError(`a SOCKS greeting offers 1 to 255 methods, got ${methods.length}`);
  }
  methods.forEach((m, i) => _checkByte(m, `SOCKS method #${i}`));
  return Uint8Array.of(SOCKS_VERSION, methods.length, ...methods);
}

/** RFC 1929 credentials; username 1 to 255 UTF-8 bytes, password 0 to 255. */
export function encodeUserPass(credentials: UserPass): Uint8Array {
  const username = _utf8Encoder.encode(credentials.username);
  const password = _utf8Encoder.encode(credentials.password);
  if (username.length < 1 || username.length > 255) {
    throw new RangeError(`a SOCKS username is 1 to 255 UTF-8 bytes, got ${username.length}`);
  }
  if (password.length > 255) {
    throw new RangeError(`a SOCKS password is at most 255 UTF-8 bytes, got ${password.length}`);
  }
  return Uint8Array.of(
    USERPASS_VERSION,
    username.length,
    ...username,
    password.length,
    ...password,
  );
}

/** VER CMD RSV ATYP DST.ADDR DST.PORT. */
export function encodeRequest(request: Request): Uint8Array {
  _checkByte(request.command, "SOCKS command");
  const { port, address } = request;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`a SOCKS destination port is 1 to 65535, got ${port}`);
  }
  let head: number[];
  switch (address.type) {
    case "ipv4":
      head = [AddressType.IPV4, ..._ipv4Bytes(address.host)];
      break;
    case "ipv6":
      head = [AddressType.IPV6, ..._ipv6Bytes(address.host)];
      break;
    case "domain": {
      const host = address.host;
      const valid = [...host].every((c) => c.length === 1 && _isHostByte(c.charCodeAt(0)));
      if (host.length < 1 || host.length > 255 || !valid) {
        throw new RangeError(
          `a SOCKS domain is 1 to 255 letters, digits, '-', '.' or '_', got '${host}'`,
        );
      }
      head = [AddressType.DOMAIN, host.length, ...[...host].map((c) => c.charCodeAt(0))];
      break;
    }
  }
  return Uint8Array.of(SOCKS_VERSION, request.command, 0, ...head, port >> 8, port & 0xff);
}

function _ipv4Bytes(text: string): number[] {
  // Leading zeros are refused: some stacks read them as octal.
  const m = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/.exec(text);
  const bytes = m ? m.slice(1).map(Number) : [];
  if (!m || bytes.some((b) => b > 255)) {
    throw new RangeError(`'${text}' is not a dotted-decimal IPv4 address`);
  }
  return bytes;
}

function _ipv6Bytes(text: string): number[] {
  const fail = () => new RangeError(`'${text}' is not an IPv6 address`);
  const halves = text.split("::");
  if (halves.length > 2) throw fail();
  const parts = halves.map((h) => (h === "" ? [] : h.split(":")));
  // A trailing dotted IPv4 (e.g. ::ffff:192.0.2.1) stands for the last two groups.
  const last = parts[parts.length - 1];
  if (last.length > 0 && last[last.length - 1].includes(".")) {
    const v4 = _ipv4Bytes(last.pop()!);
    last.push(((v4[0] << 8) | v4[1]).toString(16), ((v4[2] << 8) | v4[3]).toString(16));
  }
  const groups = parts.map((p) =>
    p.map((g) => {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw fail();
      return parseInt(g, 16);
    })
  );
  const count = groups[0].length + (groups[1]?.length ?? 0);
  if (groups.length === 1 ? count !== 8 : count > 7) throw fail();
  const all = groups.length === 1
    ? groups[0]
    : [...groups[0], ...new Array<number>(8 - count).fill(0), ...groups[1]];
  return all.flatMap((g) => [g >> 8, g & 0xff]);
}

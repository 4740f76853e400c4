import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type Address,
  AddressType,
  chooseMethod,
  Command,
  encodeGreeting,
  encodeMethodSelection,
  encodeReply,
  encodeRequest,
  encodeSocks4Rejection,
  encodeUserPass,
  encodeUserPassStatus,
  ERROR_REPLIES,
  formatIpv6,
  MAX_GREETING_BYTES,
  MAX_HELLO_BYTES,
  MAX_REQUEST_BYTES,
  MAX_SOCKS4_REQUEST_BYTES,
  MAX_USERPASS_BYTES,
  Method,
  type Parsed,
  parseGreeting,
  parseHello,
  parseRequest,
  parseUserPass,
  Reply,
  type ReplyCode,
  type Request,
  Socks5Error,
  type Socks5ErrorCode,
  SOCKS_VERSION,
} from "../../lib/socks5.ts";
import { concat } from "./bytes.ts";

type Parser<T> = (buf: Uint8Array) => Parsed<T>;

const ascii = (text: string) => Array.from(text, (c) => c.charCodeAt(0));

/** The Socks5Error `fn` raises; any other outcome fails the test. */
function errorOf(fn: () => unknown): Socks5Error {
  try {
    fn();
  } catch (e) {
    if (e instanceof Socks5Error) return e;
    throw e;
  }
  assert.fail("expected a Socks5Error");
}

/** The `need` of every strict prefix of `msg`, checking each is > the prefix length; then
 * checks the whole message parses to exactly its own length. */
function prefixNeeds<T>(parse: Parser<T>, msg: Uint8Array): number[] {
  const needs: number[] = [];
  for (let k = 0; k < msg.length; k++) {
    const r = parse(msg.subarray(0, k));
    assert.ok(!r.done, `prefix of ${k} bytes must not complete`);
    assert.ok(r.need > k, `prefix of ${k} bytes: need ${r.need} must exceed it`);
    needs.push(r.need);
  }
  const full = parse(msg);
  assert.equal(full.done && full.size, msg.length);
  return needs;
}

function chunksAt(msg: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const bounds = [0, ...cuts, msg.length];
  return bounds.slice(1).map((end, i) => msg.subarray(bounds[i], end));
}

/** Mimics the I/O layer: buffers chunks as they "arrive" and calls the parser again only
 * once `need` bytes are buffered. Returns the value and the bytes left for what follows. */
function drive<T>(parse: Parser<T>, chunks: readonly Uint8Array[]) {
  let buffered: Uint8Array = new Uint8Array(0);
  let need = 0;
  let calls = 0;
  for (let i = 0; i < chunks.length; i++) {
    buffered = concat(buffered, chunks[i]);
    if (buffered.length < need) continue;
    calls++;
    const r = parse(buffered);
    if (r.done) {
      return {
        value: r.value,
        rest: concat(buffered.subarray(r.size), ...chunks.slice(i + 1)),
        calls,
      };
    }
    assert.ok(r.need > buffered.length);
    need = r.need;
  }
  return { value: undefined, need, buffered, calls };
}

type Outcome =
  | { kind: "need"; need: number }
  | { kind: "done"; value: unknown; size: number }
  | { kind: "error"; code: Socks5ErrorCode };

/** Runs a parser; any exception other than Socks5Error propagates and fails the test. */
function outcome(parse: Parser<unknown>, buf: Uint8Array): Outcome {
  try {
    const r = parse(buf);
    return r.done ? { kind: "done", value: r.value, size: r.size } : { kind: "need", need: r.need };
  } catch (e) {
    if (e instanceof Socks5Error) return { kind: "error", code: e.code };
    throw e;
  }
}

// --- greeting --------------------------------------------------------------------------

Deno.test("socks5: greeting parses the offered methods and reports its size", () => {
  assert.deepEqual(parseGreeting(Uint8Array.of(5, 2, 0, 2)), {
    done: true,
    value: { methods: [0, 2] },
    size: 4,
  });
});

Deno.test("socks5: greeting leaves trailing bytes unconsumed", () => {
  const buf = Uint8Array.of(5, 1, 2, 1, 2, 3, 4);
  const r = parseGreeting(buf);
  assert.deepEqual(r, { done: true, value: { methods: [2] }, size: 3 });
  assert.deepEqual(buf, Uint8Array.of(5, 1, 2, 1, 2, 3, 4));
});

Deno.test("socks5: greeting fed byte by byte needs exactly the bytes it can complete with", () => {
  // At most 3 bytes until NMETHODS is known (a greeting offers at least one method).
  assert.deepEqual(prefixNeeds(parseGreeting, Uint8Array.of(5, 3, 0, 1, 2)), [3, 3, 5, 5, 5]);
  assert.deepEqual(prefixNeeds(parseGreeting, Uint8Array.of(5, 1, 0)), [3, 3, 3]);
});

Deno.test("socks5: greeting split across reads", () => {
  const msg = Uint8Array.of(5, 4, 0, 1, 2, 0x80);
  for (const cuts of [[1], [2], [1, 3], [5], [1, 2, 3, 4, 5]]) {
    const r = drive(parseGreeting, chunksAt(msg, cuts));
    assert.deepEqual(r.value, { methods: [0, 1, 2, 0x80] }, `cuts ${cuts}`);
    assert.deepEqual(r.rest, new Uint8Array(0));
  }
  // One byte per read: the I/O layer calls only at 1 byte (need 3), 3 (need 6) and 6.
  assert.equal(drive(parseGreeting, chunksAt(msg, [1, 2, 3, 4, 5])).calls, 3);
});

Deno.test("socks5: greeting cut off mid-message waits for the rest", () => {
  const r = drive(parseGreeting, [Uint8Array.of(5, 3, 0)]);
  assert.equal(r.value, undefined);
  assert.equal(r.need, 5);
});

Deno.test("socks5: greeting with SOCKS version 4 is closed without a reply", () => {
  const err = errorOf(() => parseGreeting(Uint8Array.of(4)));
  assert.equal(err.code, "bad_version");
  assert.equal(err.reply, undefined);
  assert.match(err.message, /SOCKS4/);
});

Deno.test("socks5: greeting from an HTTP client says this port is not an HTTP proxy", () => {
  const err = errorOf(() => parseGreeting(new TextEncoder().encode("CONNECT x:80 HTTP/1.1\r\n")));
  assert.equal(err.code, "bad_version");
  assert.match(err.message, /HTTP/);
});

Deno.test("socks5: greeting offering no methods is closed without a reply", () => {
  const err = errorOf(() => parseGreeting(Uint8Array.of(5, 0)));
  assert.equal(err.code, "no_methods");
  assert.equal(err.reply, undefined);
});

Deno.test("socks5: greeting with 255 methods is MAX_GREETING_BYTES long", () => {
  const methods = Array.from({ length: 255 }, (_, i) => i);
  const r = parseGreeting(encodeGreeting(methods));
  assert.deepEqual(r, { done: true, value: { methods }, size: MAX_GREETING_BYTES });
});

// --- username/password -----------------------------------------------------------------

Deno.test("socks5: userpass round-trips a unicode username and password", () => {
  const creds = { username: "usér:élodie", password: "pässwörd 🔑 密码" };
  const msg = encodeUserPass(creds);
  assert.deepEqual(parseUserPass(msg), { done: true, value: { ...creds }, size: msg.length });
});

Deno.test("socks5: userpass accepts an empty password", () => {
  assert.deepEqual(parseUserPass(Uint8Array.of(1, 1, 0x61, 0)), {
    done: true,
    value: { username: "a", password: "" },
    size: 4,
  });
});

Deno.test("socks5: userpass keeps a leading byte-order mark as part of the secret", () => {
  const r = parseUserPass(Uint8Array.of(1, 1, 0x61, 3, 0xef, 0xbb, 0xbf));
  assert.equal(r.done && r.value.password, "\ufeff");
});

Deno.test("socks5: userpass leaves trailing bytes unconsumed", () => {
  const msg = encodeUserPass({ username: "alice", password: "s3cret" });
  const r = parseUserPass(concat(msg, [5, 1, 0, 3]));
  assert.deepEqual(r, {
    done: true,
    value: { username: "alice", password: "s3cret" },
    size: msg.length,
  });
});

Deno.test("socks5: userpass fed byte by byte needs exactly the bytes it can complete with", () => {
  const msg = Uint8Array.of(1, 2, 0x61, 0x62, 3, 0x78, 0x79, 0x7a);
  // Until ULEN: 4 (1-byte name, empty password); until PLEN: name + empty password.
  assert.deepEqual(prefixNeeds(parseUserPass, msg), [4, 4, 5, 5, 5, 8, 8, 8]);
});

Deno.test("socks5: userpass split across reads", () => {
  const creds = { username: "workload-7", password: "ünïcode" };
  const msg = encodeUserPass(creds);
  for (const cuts of [[1], [2], [3, 11], [12], [13, msg.length - 1]]) {
    const r = drive(parseUserPass, chunksAt(msg, cuts));
    assert.deepEqual(r.value, creds, `cuts ${cuts}`);
  }
});

Deno.test("socks5: userpass cut off mid-password waits for the rest", () => {
  const msg = encodeUserPass({ username: "alice", password: "secret" });
  const r = drive(parseUserPass, [msg.subarray(0, msg.length - 2)]);
  assert.equal(r.value, undefined);
  assert.equal(r.need, msg.length);
});

Deno.test("socks5: userpass with a SOCKS version byte instead of 0x01 is closed", () => {
  const err = errorOf(() => parseUserPass(Uint8Array.of(5, 1, 0)));
  assert.equal(err.code, "bad_auth_version");
  assert.equal(err.reply, undefined);
});

Deno.test("socks5: userpass with an empty username is closed", () => {
  const err = errorOf(() => parseUserPass(Uint8Array.of(1, 0)));
  assert.equal(err.code, "empty_username");
  assert.equal(err.reply, undefined);
});

Deno.test("socks5: userpass username that is not UTF-8 is refused before the password", () => {
  const err = errorOf(() => parseUserPass(Uint8Array.of(1, 2, 0xc3, 0x28)));
  assert.equal(err.code, "bad_utf8");
  assert.equal(err.reply, undefined);
  assert.match(err.message, /username/);
});

Deno.test("socks5: userpass password that is not UTF-8 is refused without quoting it", () => {
  const err = errorOf(() => parseUserPass(Uint8Array.of(1, 1, 0x61, 3, 0x7a, 0x71, 0xff)));
  assert.equal(err.code, "bad_utf8");
  assert.match(err.message, /password/);
  assert.doesNotMatch(err.message, /zq|0xff/i);
});

Deno.test("socks5: userpass of maximum lengths is MAX_USERPASS_BYTES long", () => {
  const creds = { username: "u".repeat(255), password: "p".repeat(255) };
  const r = parseUserPass(encodeUserPass(creds));
  assert.deepEqual(r, { done: true, value: creds, size: MAX_USERPASS_BYTES });
});

// --- hello: SOCKS5 greeting or SOCKS4 request ------------------------------------------

/** What curl --socks4 sends for 10.0.0.1:80 (empty user id). */
const SOCKS4_CONNECT = [4, 1, 0, 80, 10, 0, 0, 1, 0];
/** What curl --socks4a sends for web.flor:8080: DSTIP 0.0.0.1, user id, domain. */
const SOCKS4A_CONNECT = [4, 1, 0x1f, 0x90, 0, 0, 0, 1, ...ascii("me"), 0, ...ascii("web.flor"), 0];

Deno.test("socks5: hello reads a SOCKS5 greeting as version 5", () => {
  assert.deepEqual(parseHello(Uint8Array.of(5, 2, 0, 2, 9)), {
    done: true,
    value: { version: 5, greeting: { methods: [0, 2] } },
    size: 4,
  });
});

Deno.test("socks5: hello reads a SOCKS4 CONNECT whole, so it can be answered", () => {
  assert.deepEqual(parseHello(Uint8Array.from([...SOCKS4_CONNECT, 7])), {
    done: true,
    value: { version: 4, request: { command: 1, port: 80, socks4a: false } },
    size: SOCKS4_CONNECT.length,
  });
  assert.deepEqual(parseHello(Uint8Array.from(SOCKS4A_CONNECT)), {
    done: true,
    value: { version: 4, request: { command: 1, port: 8080, socks4a: true } },
    size: SOCKS4A_CONNECT.length,
  });
});

Deno.test("socks5: hello fed a SOCKS4 request byte by byte needs one more byte at a time", () => {
  const msg = Uint8Array.from(SOCKS4_CONNECT);
  assert.deepEqual(prefixNeeds(parseHello, msg), [3, 9, 9, 9, 9, 9, 9, 9, 9]);
  assertPrefixesNeedMore(parseHello, Uint8Array.from(SOCKS4A_CONNECT));
});

Deno.test("socks5: hello with a SOCKS4a request split across reads", () => {
  const msg = Uint8Array.from([...SOCKS4A_CONNECT, 0xaa]);
  for (const cuts of [[1], [8], [9, 11], [12], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]]) {
    const r = drive(parseHello, chunksAt(msg, cuts));
    assert.deepEqual(r.value, { version: 4, request: { command: 1, port: 8080, socks4a: true } });
    assert.deepEqual(r.rest, Uint8Array.of(0xaa), `cuts ${cuts}`);
  }
});

Deno.test("socks5: hello cut off in a SOCKS4a domain waits for the rest", () => {
  const r = drive(parseHello, [Uint8Array.from(SOCKS4A_CONNECT.slice(0, 14))]);
  assert.equal(r.value, undefined);
  assert.equal(r.need, 15);
});

Deno.test("socks5: a SOCKS4 user id or domain over 255 bytes is closed without a reply", () => {
  const long = new Array(256).fill(0x61);
  for (const msg of [[4, 1, 0, 80, 10, 0, 0, 1, ...long], [4, 1, 0, 80, 0, 0, 0, 1, 0, ...long]]) {
    const err = errorOf(() => parseHello(Uint8Array.from(msg)));
    assert.equal(err.code, "socks4_too_long");
    assert.equal(err.reply, undefined);
  }
  // 255 bytes of each is the longest accepted request.
  const max = [4, 1, 0, 80, 0, 0, 0, 1, ...long.slice(1), 0, ...long.slice(1), 0];
  assert.equal(max.length, MAX_SOCKS4_REQUEST_BYTES);
  assert.ok(MAX_HELLO_BYTES >= MAX_SOCKS4_REQUEST_BYTES);
  const r = parseHello(Uint8Array.from(max));
  assert.ok(r.done && r.size === MAX_SOCKS4_REQUEST_BYTES);
});

Deno.test("socks5: hello with another version is closed without a reply", () => {
  const err = errorOf(() => parseHello(Uint8Array.of(6)));
  assert.equal(err.code, "bad_version");
});

Deno.test("socks5: the SOCKS4 rejection is 8 bytes, VN 0 and CD 0x5B", () => {
  assert.deepEqual(encodeSocks4Rejection(), Uint8Array.of(0, 0x5b, 0, 0, 0, 0, 0, 0));
});

// --- request ---------------------------------------------------------------------------

const CONNECT_GITLAB = Uint8Array.of(5, 1, 0, 3, 11, ...ascii("gitlab.flor"), 0, 80);

Deno.test("socks5: request for a domain parses like curl --socks5-hostname sends it", () => {
  assert.deepEqual(parseRequest(CONNECT_GITLAB), {
    done: true,
    value: { command: Command.CONNECT, address: { type: "domain", host: "gitlab.flor" }, port: 80 },
    size: CONNECT_GITLAB.length,
  });
});

Deno.test("socks5: request keeps domain case and accepts digits, '-' and '_'", () => {
  const host = "Git_Lab-2.Ops.flor";
  const r = parseRequest(
    encodeRequest({ command: 1, address: { type: "domain", host }, port: 8443 }),
  );
  assert.deepEqual(r.done && r.value.address, { type: "domain", host });
  assert.equal(r.done && r.value.port, 8443);
});

Deno.test("socks5: request for an IPv4 address parses it as dotted decimal", () => {
  const r = parseRequest(Uint8Array.of(5, 1, 0, 1, 10, 0, 255, 3, 0x01, 0xbb));
  assert.deepEqual(r, {
    done: true,
    value: { command: 1, address: { type: "ipv4", host: "10.0.255.3" }, port: 443 },
    size: 10,
  });
});

Deno.test("socks5: request for an IPv6 address parses it as compressed lowercase text", () => {
  const addr = [0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 1];
  const r = parseRequest(Uint8Array.of(5, 1, 0, 4, ...addr, 0xff, 0xff));
  assert.deepEqual(r, {
    done: true,
    value: { command: 1, address: { type: "ipv6", host: "2001:db8::1" }, port: 65535 },
    size: 22,
  });
});

Deno.test("socks5: IPv6 text follows RFC 5952", () => {
  const cases: [string, string][] = [
    ["0000:0000:0000:0000:0000:0000:0000:0000", "::"],
    ["0000:0000:0000:0000:0000:0000:0000:0001", "::1"],
    ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["2001:0db8:0000:0001:0001:0001:0001:0001", "2001:db8:0:1:1:1:1:1"], // one zero group stays
    ["2001:0000:0000:0001:0000:0000:0000:0001", "2001:0:0:1::1"], // longest run
    ["2001:0db8:0000:0000:0001:0000:0000:0001", "2001:db8::1:0:0:1"], // first of equal runs
    ["FE80:0000:0000:0000:ABCD:0000:0000:0000", "fe80::abcd:0:0:0"],
    ["0000:0000:0000:0000:0000:ffff:0102:0304", "::ffff:102:304"], // mapped IPv4 stays hex
    ["0001:0000:0000:0000:0000:0000:0000:0000", "1::"],
  ];
  for (const [full, expected] of cases) {
    const bytes = Uint8Array.from(
      full.split(":").flatMap((g) => {
        const n = parseInt(g, 16);
        return [n >> 8, n & 0xff];
      }),
    );
    assert.equal(formatIpv6(bytes), expected, full);
  }
});

Deno.test("socks5: IPv6 text matches the WHATWG URL serializer for any address", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
      const text = formatIpv6(bytes);
      assert.equal(new URL(`http://[${text}]/`).hostname, `[${text}]`);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("socks5: request leaves the first tunnel payload bytes unconsumed", () => {
  const payload = new TextEncoder().encode("GET / HTTP/1.1\r\n");
  const r = parseRequest(concat(CONNECT_GITLAB, payload));
  assert.equal(r.done && r.size, CONNECT_GITLAB.length);
});

Deno.test("socks5: request fed byte by byte needs exactly the bytes it can complete with", () => {
  // Until ATYP: 8 (a 1-byte domain); then the address type fixes or bounds the size.
  const domain = Uint8Array.of(5, 1, 0, 3, 2, 0x61, 0x62, 0, 80);
  assert.deepEqual(prefixNeeds(parseRequest, domain), [8, 8, 8, 8, 8, 9, 9, 9, 9]);
  const ipv4 = Uint8Array.of(5, 1, 0, 1, 127, 0, 0, 1, 0, 22);
  assert.deepEqual(prefixNeeds(parseRequest, ipv4), [8, 8, 8, 8, ...new Array(6).fill(10)]);
  const ipv6 = encodeRequest({ command: 1, address: { type: "ipv6", host: "::1" }, port: 22 });
  assert.deepEqual(prefixNeeds(parseRequest, ipv6), [8, 8, 8, 8, ...new Array(18).fill(22)]);
});

Deno.test("socks5: request split across reads", () => {
  for (const cuts of [[1], [3], [4], [5], [4, 5], [2, 7, 15], [16], [17]]) {
    const r = drive(parseRequest, chunksAt(CONNECT_GITLAB, cuts));
    assert.deepEqual(r.value?.address, { type: "domain", host: "gitlab.flor" }, `cuts ${cuts}`);
    assert.equal(r.value?.port, 80);
  }
});

Deno.test("socks5: request cut off before its port waits for the rest", () => {
  const r = drive(parseRequest, [CONNECT_GITLAB.subarray(0, CONNECT_GITLAB.length - 1)]);
  assert.equal(r.value, undefined);
  assert.equal(r.need, CONNECT_GITLAB.length);
});

Deno.test("socks5: request with a wrong SOCKS version is closed without a reply", () => {
  const err = errorOf(() => parseRequest(Uint8Array.of(4, 1, 0)));
  assert.equal(err.code, "bad_version");
  assert.equal(err.reply, undefined);
});

Deno.test("socks5: BIND and UDP ASSOCIATE reply 0x07 as soon as the command byte arrives", () => {
  for (const command of [Command.BIND, Command.UDP_ASSOCIATE, 0x00, 0x09]) {
    const err = errorOf(() => parseRequest(Uint8Array.of(5, command)));
    assert.equal(err.code, "unsupported_command");
    assert.equal(err.reply, Reply.COMMAND_NOT_SUPPORTED);
  }
  assert.match(errorOf(() => parseRequest(Uint8Array.of(5, 3))).message, /UDP ASSOCIATE/);
});

Deno.test("socks5: request with a non-zero reserved byte replies general failure", () => {
  const err = errorOf(() => parseRequest(Uint8Array.of(5, 1, 1)));
  assert.equal(err.code, "bad_reserved");
  assert.equal(err.reply, Reply.GENERAL_FAILURE);
});

Deno.test("socks5: request with an unknown address type replies 0x08", () => {
  for (const atyp of [0x00, 0x02, 0x05, 0xff]) {
    const err = errorOf(() => parseRequest(Uint8Array.of(5, 1, 0, atyp)));
    assert.equal(err.code, "unsupported_address_type");
    assert.equal(err.reply, Reply.ADDRESS_TYPE_NOT_SUPPORTED);
  }
});

Deno.test("socks5: request with an empty domain replies host unreachable", () => {
  const err = errorOf(() => parseRequest(Uint8Array.of(5, 1, 0, 3, 0)));
  assert.equal(err.code, "empty_domain");
  assert.equal(err.reply, Reply.HOST_UNREACHABLE);
});

Deno.test("socks5: request with a non-hostname byte in the domain replies host unreachable", () => {
  for (const bad of [0x00, 0x20, 0x2f, 0x3a, 0x40, 0x7f, 0x80, 0xc3]) {
    const err = errorOf(() => parseRequest(Uint8Array.of(5, 1, 0, 3, 3, 0x61, bad, 0x62)));
    assert.equal(err.code, "bad_domain", `byte ${bad}`);
    assert.equal(err.reply, Reply.HOST_UNREACHABLE);
    assert.match(err.message, /offset 1/);
  }
});

Deno.test("socks5: request with a port of 0 replies general failure", () => {
  const err = errorOf(() => parseRequest(Uint8Array.of(5, 1, 0, 1, 10, 0, 0, 1, 0, 0)));
  assert.equal(err.code, "bad_port");
  assert.equal(err.reply, Reply.GENERAL_FAILURE);
});

Deno.test("socks5: request for a 255-byte domain is MAX_REQUEST_BYTES long", () => {
  const host = "a".repeat(255);
  const r = parseRequest(encodeRequest({ command: 1, address: { type: "domain", host }, port: 1 }));
  assert.equal(r.done && r.size, MAX_REQUEST_BYTES);
});

// --- errors ----------------------------------------------------------------------------

// Typed as a Record over every code, so adding a code without a case fails to compile.
const ERROR_CASES: Record<
  Socks5ErrorCode,
  { parse: Parser<unknown>; input: number[]; reply: ReplyCode | undefined }
> = {
  bad_version: { parse: parseGreeting, input: [4, 1, 0], reply: undefined },
  no_methods: { parse: parseGreeting, input: [5, 0], reply: undefined },
  bad_auth_version: { parse: parseUserPass, input: [2, 1, 0x61, 0], reply: undefined },
  empty_username: { parse: parseUserPass, input: [1, 0, 0], reply: undefined },
  bad_utf8: { parse: parseUserPass, input: [1, 1, 0x80, 0], reply: undefined },
  bad_reserved: { parse: parseRequest, input: [5, 1, 2, 1], reply: 0x01 },
  unsupported_command: { parse: parseRequest, input: [5, 2, 0, 1], reply: 0x07 },
  unsupported_address_type: { parse: parseRequest, input: [5, 1, 0, 2], reply: 0x08 },
  empty_domain: { parse: parseRequest, input: [5, 1, 0, 3, 0, 0, 80], reply: 0x04 },
  bad_domain: { parse: parseRequest, input: [5, 1, 0, 3, 1, 0x2a, 0, 80], reply: 0x04 },
  bad_port: { parse: parseRequest, input: [5, 1, 0, 3, 1, 0x61, 0, 0], reply: 0x01 },
  socks4_too_long: {
    parse: parseHello,
    input: [4, 1, 0, 80, 10, 0, 0, 1, ...new Array(256).fill(0x61)],
    reply: undefined,
  },
};

Deno.test("socks5: every error code is raised with its reply code", () => {
  assert.deepEqual(Object.keys(ERROR_CASES).sort(), Object.keys(ERROR_REPLIES).sort());
  for (const [code, { parse, input, reply }] of Object.entries(ERROR_CASES)) {
    const err = errorOf(() => parse(Uint8Array.from(input)));
    assert.equal(err.code, code);
    assert.equal(err.reply, reply, code);
    assert.ok(err.message.startsWith("SOCKS "), err.message);
  }
});

Deno.test("socks5: Socks5Error is an Error named Socks5Error", () => {
  const err = errorOf(() => parseRequest(Uint8Array.of(5, 2)));
  assert.ok(err instanceof Error);
  assert.equal(err.name, "Socks5Error");
});

// --- method choice and encoders --------------------------------------------------------

Deno.test("socks5: chooseMethod prefers credentials when both sides allow them", () => {
  const both = { noAuth: true, userPass: true };
  assert.equal(chooseMethod([0, 2], both), Method.USERNAME_PASSWORD);
  assert.equal(chooseMethod([2, 0], both), Method.USERNAME_PASSWORD);
  assert.equal(chooseMethod([0], both), Method.NO_AUTH);
  assert.equal(chooseMethod([2], both), Method.USERNAME_PASSWORD);
});

Deno.test("socks5: chooseMethod falls back to no-auth, else no acceptable method", () => {
  assert.equal(chooseMethod([0, 2], { noAuth: true, userPass: false }), Method.NO_AUTH);
  assert.equal(chooseMethod([2], { noAuth: true, userPass: false }), Method.NO_ACCEPTABLE);
  assert.equal(chooseMethod([0], { noAuth: false, userPass: true }), Method.NO_ACCEPTABLE);
  assert.equal(chooseMethod([0, 2], { noAuth: false, userPass: false }), Method.NO_ACCEPTABLE);
  assert.equal(chooseMethod([1, 3, 0x80], { noAuth: true, userPass: true }), Method.NO_ACCEPTABLE);
  assert.equal(chooseMethod([], { noAuth: true, userPass: true }), Method.NO_ACCEPTABLE);
});

Deno.test("socks5: chooseMethod only picks a method both sides allow", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 255 }),
      fc.boolean(),
      fc.boolean(),
      (offered, noAuth, userPass) => {
        const m = chooseMethod(offered, { noAuth, userPass });
        const allowed = [...(userPass ? [2] : []), ...(noAuth ? [0] : [])];
        const expected = allowed.find((a) => offered.includes(a)) ?? Method.NO_ACCEPTABLE;
        assert.equal(m, expected);
      },
    ),
  );
});

Deno.test("socks5: encoders write the server's replies", () => {
  assert.deepEqual(encodeMethodSelection(Method.USERNAME_PASSWORD), Uint8Array.of(5, 2));
  assert.deepEqual(encodeMethodSelection(Method.NO_ACCEPTABLE), Uint8Array.of(5, 0xff));
  assert.deepEqual(encodeUserPassStatus(true), Uint8Array.of(1, 0));
  assert.deepEqual(encodeUserPassStatus(false), Uint8Array.of(1, 1));
  for (const code of Object.values(Reply)) {
    assert.deepEqual(encodeReply(code), Uint8Array.of(5, code, 0, 1, 0, 0, 0, 0, 0, 0));
  }
  assert.equal(SOCKS_VERSION, 5);
});

Deno.test("socks5: encoders write client messages the parsers read back", () => {
  assert.deepEqual(encodeGreeting([0, 2]), Uint8Array.of(5, 2, 0, 2));
  assert.deepEqual(encodeUserPass({ username: "a", password: "" }), Uint8Array.of(1, 1, 0x61, 0));
  assert.deepEqual(
    encodeRequest({ command: 1, address: { type: "domain", host: "gitlab.flor" }, port: 80 }),
    CONNECT_GITLAB,
  );
  const v6 = { type: "ipv6", host: "::FFFF:192.0.2.1" } as const;
  const r = parseRequest(encodeRequest({ command: 1, address: v6, port: 1 }));
  assert.deepEqual(r.done && r.value.address, { type: "ipv6", host: "::ffff:c000:201" });
  assert.equal(encodeRequest({ command: 2, address: v6, port: 1 })[1], Command.BIND);
});

Deno.test("socks5: encoders refuse values outside the protocol with RangeError", () => {
  const req = (address: Address, port = 80, command = 1) => () =>
    encodeRequest({ command, address, port });
  const bad: [string, () => unknown][] = [
    ["method 256", () => encodeMethodSelection(256)],
    ["method -1", () => encodeMethodSelection(-1)],
    ["method 1.5", () => encodeMethodSelection(1.5)],
    ["reply 9", () => encodeReply(9 as ReplyCode)],
    ["no methods", () => encodeGreeting([])],
    ["256 methods", () => encodeGreeting(new Array(256).fill(0))],
    ["empty username", () => encodeUserPass({ username: "", password: "x" })],
    ["long username", () => encodeUserPass({ username: "é".repeat(128), password: "" })],
    ["long password", () => encodeUserPass({ username: "a", password: "p".repeat(256) })],
    ["port 0", req({ type: "domain", host: "a" }, 0)],
    ["port 65536", req({ type: "domain", host: "a" }, 65536)],
    ["command 256", req({ type: "domain", host: "a" }, 80, 256)],
    ["empty domain", req({ type: "domain", host: "" })],
    ["long domain", req({ type: "domain", host: "a".repeat(256) })],
    ["domain with space", req({ type: "domain", host: "a b" })],
    ["non-ASCII domain", req({ type: "domain", host: "é.flor" })],
    ["IPv4 256", req({ type: "ipv4", host: "256.0.0.1" })],
    ["IPv4 leading zero", req({ type: "ipv4", host: "01.2.3.4" })],
    ["IPv4 three parts", req({ type: "ipv4", host: "1.2.3" })],
    ["IPv6 two ::", req({ type: "ipv6", host: "1::2::3" })],
    ["IPv6 :::", req({ type: "ipv6", host: ":::" })],
    ["IPv6 long group", req({ type: "ipv6", host: "12345::" })],
    ["IPv6 nine groups", req({ type: "ipv6", host: "1:2:3:4:5:6:7:8:9" })],
    ["IPv6 seven groups", req({ type: "ipv6", host: "1:2:3:4:5:6:7" })],
    ["IPv6 eight groups and ::", req({ type: "ipv6", host: "1:2:3:4::5:6:7:8" })],
    ["IPv6 bare IPv4", req({ type: "ipv6", host: "1.2.3.4" })],
    ["IPv6 zone", req({ type: "ipv6", host: "fe80::1%eth0" })],
    ["IPv6 empty", req({ type: "ipv6", host: "" })],
  ];
  for (const [what, fn] of bad) assert.throws(fn, RangeError, what);
});

// --- properties ------------------------------------------------------------------------

/** Random bytes, often behind a valid head so the fuzzing reaches past the version byte.
 * fast-check keeps arrays to about 10 items unless told `size: "max"`: ask for both. */
function fuzzBytes(...heads: number[][]): fc.Arbitrary<Uint8Array> {
  const tail = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.uint8Array({ maxLength: 300, size: "max" }),
  );
  return fc.oneof(
    tail,
    fc.tuple(fc.constantFrom(...heads), tail).map(([head, t]) => concat(head, t)),
  );
}

const DOMAIN_AB = [5, 1, 0, 3, 2, 0x61, 0x62];
const FUZZ_CASES = [{
  name: "greeting",
  parse: parseGreeting as Parser<unknown>,
  max: MAX_GREETING_BYTES,
  bytes: fuzzBytes([5], [5, 1], [5, 2, 0, 2]),
}, {
  name: "userpass",
  parse: parseUserPass as Parser<unknown>,
  max: MAX_USERPASS_BYTES,
  bytes: fuzzBytes([1], [1, 1, 0x61], [1, 5, ...ascii("alice")]),
}, {
  name: "hello",
  parse: parseHello as Parser<unknown>,
  max: MAX_HELLO_BYTES,
  bytes: fuzzBytes([5], [5, 1], [4], [4, 1, 0, 80, 0, 0, 0, 1], [4, 1, 0, 80, 1, 2, 3, 4]),
}, {
  name: "request",
  parse: parseRequest as Parser<unknown>,
  max: MAX_REQUEST_BYTES,
  bytes: fuzzBytes([5, 1], [5, 1, 0], [5, 1, 0, 1], [5, 1, 0, 3], [5, 1, 0, 4], DOMAIN_AB),
}];

for (const { name, parse, max, bytes } of FUZZ_CASES) {
  Deno.test(`socks5: 10,000 random byte strings raise only Socks5Error from the ${name} parser`, () => {
    fc.assert(
      fc.property(bytes, fc.nat(), (buf, cutSeed) => {
        const copy = buf.slice();
        const full = outcome(parse, buf);
        assert.deepEqual(buf, copy, "the parser must not mutate its input");
        if (full.kind === "need") assert.ok(full.need > buf.length && full.need <= max);
        if (full.kind === "done") assert.ok(full.size <= buf.length && full.size <= max);
        // A prefix needs more bytes (no more than the whole message turns out to take), or
        // ends exactly as the whole input does.
        const cut = cutSeed % (buf.length + 1);
        const part = outcome(parse, buf.subarray(0, cut));
        if (part.kind !== "need") assert.deepEqual(part, full);
        else if (full.kind === "done") assert.ok(part.need <= full.size);
        else if (full.kind === "need") assert.ok(part.need <= full.need);
      }),
      { numRuns: 10_000 },
    );
  });
}

const HOST_CHARS = [..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._"];
const addressArb: fc.Arbitrary<Address> = fc.oneof(
  fc.string({ unit: fc.constantFrom(...HOST_CHARS), minLength: 1, maxLength: 255, size: "max" })
    .map((host) => ({ type: "domain" as const, host })),
  fc.ipV4().map((host) => ({ type: "ipv4" as const, host })),
  fc.ipV6().map((host) => ({ type: "ipv6" as const, host })),
);
const requestArb: fc.Arbitrary<Request> = fc.record({
  command: fc.constant(Command.CONNECT),
  address: addressArb,
  port: fc.integer({ min: 1, max: 65535 }),
});

/** Every strict prefix needs more, with a need above the prefix, at most the whole message,
 * and never shrinking as bytes arrive. */
function assertPrefixesNeedMore<T>(parse: Parser<T>, msg: Uint8Array): void {
  const needs = prefixNeeds(parse, msg);
  needs.forEach((need, k) => {
    assert.ok(need <= msg.length, `prefix ${k}: need ${need} > ${msg.length}`);
    if (k > 0) assert.ok(need >= needs[k - 1], `prefix ${k}: need shrank`);
  });
}

Deno.test("socks5: generated requests round-trip and every strict prefix needs more", () => {
  fc.assert(
    fc.property(requestArb, (request) => {
      const msg = encodeRequest(request);
      const r = parseRequest(msg);
      assert.ok(r.done);
      const { host } = request.address;
      const canonical = request.address.type === "ipv6"
        ? new URL(`http://[${host}]/`).hostname.slice(1, -1)
        : host;
      assert.deepEqual(r.value, { ...request, address: { ...request.address, host: canonical } });
      assert.deepEqual(encodeRequest(r.value), msg);
      assertPrefixesNeedMore(parseRequest, msg);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("socks5: generated greetings and credentials round-trip, prefixes need more", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 255, size: "max" }),
      (methods) => {
        const msg = encodeGreeting(methods);
        assert.deepEqual(parseGreeting(msg), { done: true, value: { methods }, size: msg.length });
        assertPrefixesNeedMore(parseGreeting, msg);
      },
    ),
  );
  // "binary" yields any code point but never a lone surrogate; 63 of them fit in 255 bytes.
  const text = (minLength: number) =>
    fc.string({ unit: "binary", minLength, maxLength: 63, size: "max" });
  fc.assert(
    fc.property(fc.record({ username: text(1), password: text(0) }), (creds) => {
      const msg = encodeUserPass(creds);
      assert.deepEqual(parseUserPass(msg), { done: true, value: { ...creds }, size: msg.length });
      assertPrefixesNeedMore(parseUserPass, msg);
    }),
  );
});

Deno.test("socks5: any split of a request across reads yields the same request", () => {
  fc.assert(
    fc.property(
      requestArb,
      fc.uint8Array({ maxLength: 8 }),
      fc.array(fc.nat(), { maxLength: 6 }),
      (request, trailing, seeds) => {
        const msg = encodeRequest(request);
        const all = concat(msg, trailing);
        const cuts = [...new Set(seeds.map((s) => s % (all.length + 1)))].sort((a, b) => a - b);
        const r = drive(parseRequest, chunksAt(all, cuts));
        const direct = parseRequest(msg);
        assert.ok(direct.done);
        assert.deepEqual(r.value, direct.value);
        assert.deepEqual(r.rest, trailing);
      },
    ),
  );
});

Deno.test("socks5: a request needs at most MAX_REQUEST_BYTES whatever its address type", () => {
  for (const atyp of [AddressType.IPV4, AddressType.DOMAIN, AddressType.IPV6]) {
    const r = parseRequest(Uint8Array.of(5, 1, 0, atyp, 255));
    assert.ok(!r.done && r.need <= MAX_REQUEST_BYTES);
  }
});

import assert from "node:assert/strict";
import fc from "fast-check";
import { z } from "zod";
import { parsedBy } from "../../lib/config_problems.ts";
import { formatHostPort, isLoopback, parseHostPort, sameHostPort } from "../../lib/host_port.ts";

Deno.test("host_port: parses host:port, [v6]:port and DNS names", () => {
  assert.deepEqual(parseHostPort("127.0.0.1:8080"), { host: "127.0.0.1", port: 8080 });
  assert.deepEqual(parseHostPort("[::1]:7101"), { host: "::1", port: 7101 });
  assert.deepEqual(parseHostPort("[2001:DB8:0:0::1]:1"), { host: "2001:db8::1", port: 1 });
  assert.deepEqual(parseHostPort("[::ffff:192.0.2.1]:65535"), {
    host: "::ffff:c000:201",
    port: 65535,
  });
  assert.deepEqual(parseHostPort("Gitlab.Example.com:443"), {
    host: "gitlab.example.com",
    port: 443,
  });
  assert.deepEqual(parseHostPort("localhost:22"), { host: "localhost", port: 22 });
  assert.equal(formatHostPort({ host: "::1", port: 7101 }), "[::1]:7101");
  assert.equal(formatHostPort({ host: "10.0.0.1", port: 53 }), "10.0.0.1:53");
});

Deno.test("host_port: bad inputs throw an Error that says how to write it", () => {
  const bad: [string, string][] = [
    ["", "has no port"],
    ["127.0.0.1", "has no port"],
    [":80", "has no host"],
    ["host:", "1 to 65535"],
    ["host:0", "1 to 65535"],
    ["host:65536", "1 to 65535"],
    ["host:080x", "1 to 65535"],
    ["host:+80", "1 to 65535"],
    ["::1:80", "in brackets"],
    ["[::1]", "has no port"],
    ["[::1:80", "missing ']'"],
    ["[1.2.3.4]:80", "not an IPv6 address"],
    ["[::g]:80", "not an IPv6 address"],
    ["[fe80::1%eth0]:80", "not an IPv6 address"],
    ["256.0.0.1:80", "not an IPv4 address"],
    ["1.2.3:80", "not an IPv4 address"],
    ["-bad.example:80", "not a host name"],
    ["a b:80", "not a host name"],
    ["under_score:80", "not a host name"],
    [`${"a".repeat(64)}:80`, "not a host name"],
  ];
  for (const [text, fragment] of bad) {
    assert.throws(
      () => parseHostPort(text),
      (e: unknown) => e instanceof Error && e.message.includes(fragment),
      `${text} → ${fragment}`,
    );
  }
});

Deno.test("host_port: random strings parse to a valid port or throw Error", () => {
  const alphabet = fc.constantFrom(..."0123456789abcdefABCDEF:.[]-_ @%/x".split(""));
  const arbitrary = fc.oneof(
    fc.string(),
    fc.string({ unit: alphabet, maxLength: 30 }),
    fc.tuple(fc.string({ unit: alphabet, maxLength: 20 }), fc.integer({ min: -1, max: 70000 }))
      .map(([h, p]) => `${h}:${p}`),
  );
  fc.assert(
    fc.property(arbitrary, (text) => {
      try {
        const hp = parseHostPort(text);
        return Number.isInteger(hp.port) && hp.port >= 1 && hp.port <= 65535 &&
          typeof hp.host === "string" && hp.host.length > 0;
      } catch (e) {
        return e instanceof Error && e.message.length > 0;
      }
    }),
    { numRuns: 2000 },
  );
});

Deno.test("host_port: format and parse round-trip", () => {
  const v4 = fc.tuple(...[0, 1, 2, 3].map(() => fc.integer({ min: 0, max: 255 }))).map((o) =>
    o.join(".")
  );
  const v6 = fc.ipV6();
  const host = fc.oneof(v4, fc.domain(), v6);
  fc.assert(fc.property(host, fc.integer({ min: 1, max: 65535 }), (h, port) => {
    const hp = parseHostPort(formatHostPort({ host: h, port }));
    assert.equal(hp.port, port);
    assert.deepEqual(parseHostPort(formatHostPort(hp)), hp, "canonical form is stable");
  }));
});

Deno.test("host_port: every cut-off prefix of an address throws or is a different address", () => {
  for (const text of ["127.0.0.1:8080", "[2001:db8::1]:7101", "gitlab.example.com:443"]) {
    const whole = parseHostPort(text);
    for (let i = 0; i < text.length; i++) {
      const prefix = text.slice(0, i);
      let hp;
      try {
        hp = parseHostPort(prefix);
      } catch (e) {
        assert.ok(e instanceof Error && e.message.includes(`'${prefix}'`), prefix);
        continue;
      }
      // "127.0.0.1:808" is a valid address, just not this one
      assert.ok(!sameHostPort(hp, whole), `${prefix} parsed as the whole ${text}`);
    }
  }
});

Deno.test("host_port: byte by byte, a wrong character anywhere is refused", () => {
  const text = "[2001:db8::1]:7101";
  for (let i = 0; i < text.length; i++) {
    for (const c of [" ", "%", "@", "/", "\0"]) {
      const bad = text.slice(0, i) + c + text.slice(i + 1);
      assert.throws(() => parseHostPort(bad), Error, bad);
    }
  }
});

Deno.test("host_port: sameHostPort compares canonical forms", () => {
  const a = parseHostPort("[0:0:0:0:0:0:0:1]:7101");
  assert.ok(sameHostPort(a, parseHostPort("[::1]:7101")));
  assert.ok(!sameHostPort(a, parseHostPort("[::1]:7102")));
  assert.ok(sameHostPort(parseHostPort("Web.LAN:80"), parseHostPort("web.lan:80")));
  assert.ok(!sameHostPort(parseHostPort("127.0.0.1:80"), parseHostPort("localhost:80")));
});

Deno.test("host_port: isLoopback is localhost, 127/8 and ::1, bracketed or not", () => {
  for (const h of ["localhost", "LocalHost", "127.0.0.1", "127.255.0.9", "::1", "[::1]"]) {
    assert.equal(isLoopback(h), true, h);
  }
  for (const h of ["0.0.0.0", "10.0.0.1", "::", "[::2]", "localhost.example", "128.0.0.1", ""]) {
    assert.equal(isLoopback(h), false, h);
  }
});

Deno.test("host_port: parsedBy(parseHostPort) makes a schema field that keeps the parser's message", () => {
  const Field = z.string().transform(parsedBy(parseHostPort));
  assert.deepEqual(Field.parse("[::1]:80"), { host: "::1", port: 80 });
  const r = Field.safeParse("::1:80");
  assert.equal(r.success, false);
  assert.equal(r.error?.issues.length, 1);
  assert.equal(
    r.error?.issues[0].message,
    "'::1:80': put an IPv6 address in brackets, e.g. [::1]:8080",
  );
});

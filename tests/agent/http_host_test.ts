import assert from "node:assert/strict";
import { checkHost } from "../../agent/http_host.ts";

const loopback = { listenHost: "127.0.0.1", allowedHosts: [] };

Deno.test("http_host: the listening address and localhost are answered", () => {
  for (
    const h of ["127.0.0.1:9464", "127.0.0.1", "localhost:9464", "LOCALHOST", "localhost.:9464"]
  ) {
    assert.deepEqual(checkHost(h, loopback), { ok: true }, h);
  }
  assert.deepEqual(checkHost("[::1]:9464", { listenHost: "::1", allowedHosts: [] }), { ok: true });
});

// Issue 11 item 8: a page that rebinds its own name to 127.0.0.1 sends that name as Host.
Deno.test("http_host: other names get 421 saying how to allow one", () => {
  for (
    const h of [
      "attacker.example:9464",
      "attacker.example",
      "localhost.attacker.example",
      "127.0.0.1.attacker.example",
      "",
      "a b",
      "127.0.0.1:9464@evil",
    ]
  ) {
    const d = checkHost(h, loopback);
    assert.equal(d.ok, false, h);
    if (!d.ok) {
      assert.equal(d.status, 421);
      assert.match(d.message, /metrics\.allowed_hosts in flor\.yaml/);
    }
  }
});

Deno.test("http_host: a missing Host header is a bad request", () => {
  const d = checkHost(null, loopback);
  assert.equal(d.ok, false);
  if (!d.ok) assert.equal(d.status, 400);
});

Deno.test("http_host: configured names are answered, case-insensitively", () => {
  const policy = { listenHost: "10.0.0.5", allowedHosts: ["Prom.Example.com"] };
  assert.deepEqual(checkHost("prom.example.com:9464", policy), { ok: true });
  assert.deepEqual(checkHost("10.0.0.5:9464", policy), { ok: true });
  assert.equal(checkHost("10.0.0.6:9464", policy).ok, false, "another IP than the listening one");
});

Deno.test("http_host: on a wildcard address any IP literal is answered, names are not", () => {
  const policy = { listenHost: "0.0.0.0", allowedHosts: [] };
  assert.deepEqual(checkHost("10.0.0.5:9464", policy), { ok: true });
  assert.deepEqual(checkHost("[2001:db8::1]:9464", policy), { ok: true });
  assert.equal(checkHost("node1.example.com:9464", policy).ok, false);
});

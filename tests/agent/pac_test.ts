import assert from "node:assert/strict";
import { pacFile } from "../../agent/pac.ts";

/** Evaluates the PAC text the way a browser does: FindProxyForURL in a bare scope. */
function findProxy(pac: string): (host: string) => string {
  const f = new Function(`${pac}\nreturn FindProxyForURL;`)();
  return (host) => f(`http://${host}/`, host);
}

const pac = pacFile({
  socks: { host: "127.0.0.1", port: 1080 },
  cluster: "acme",
  principal: "user:alice",
});

Deno.test("pac: *.flor names go to the SOCKS5 port, with a SOCKS fallback entry", () => {
  const find = findProxy(pac);
  for (const host of ["web.flor", "web.acme.flor", "WEB.Flor", "web.flor."]) {
    assert.equal(find(host), "SOCKS5 127.0.0.1:1080; SOCKS 127.0.0.1:1080", host);
  }
});

Deno.test("pac: everything else goes directly", () => {
  const find = findProxy(pac);
  for (const host of ["example.com", "flor", ".flor", "xflor", "flor.example.com", "127.0.0.1"]) {
    assert.equal(find(host), "DIRECT", host);
  }
});

Deno.test("pac: an IPv6 SOCKS address is written in brackets", () => {
  const find = findProxy(
    pacFile({ socks: { host: "::1", port: 1080 }, cluster: "acme", principal: "user:alice" }),
  );
  assert.equal(find("web.flor"), "SOCKS5 [::1]:1080; SOCKS [::1]:1080");
});

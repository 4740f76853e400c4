import assert from "node:assert/strict";
import {
  forwardPort,
  ForwardSpecError,
  forwardYaml,
  keepForwards,
  parseForward,
  parseForwardListen,
  parseForwardTarget,
} from "../../agent/forward_spec.ts";
import { loadCluster } from "../../lib/cluster.ts";
import YAML from "yaml";

const ACME = { cluster: "acme" };

Deno.test("forward_spec: a bare port binds 127.0.0.1; BIND:PORT keeps its loopback host", () => {
  assert.deepEqual(parseForwardListen("15432"), { host: "127.0.0.1", port: 15432 });
  assert.deepEqual(parseForwardListen("127.0.0.2:15432"), { host: "127.0.0.2", port: 15432 });
  assert.deepEqual(parseForwardListen("[::1]:15432"), { host: "::1", port: 15432 });
  assert.deepEqual(parseForwardListen("localhost:1"), { host: "localhost", port: 1 });
  assert.deepEqual(parseForwardListen("0"), { host: "127.0.0.1", port: 0 });
});

Deno.test("forward_spec: non-loopback and malformed local sides are refused with a reason", () => {
  for (
    const [text, why] of [
      ["0.0.0.0:15432", "not a loopback address"],
      ["192.168.1.2:15432", "lends this agent's identity"],
      ["[::]:15432", "not a loopback address"],
      ["example.com:15432", "not a loopback address"],
      ["70000", "not a local port"],
      ["127.0.0.1", "has no port"],
      ["", "has no port"],
    ]
  ) {
    assert.throws(() => parseForwardListen(text), (e: Error) => {
      assert.ok(e instanceof ForwardSpecError, `${text}: ${e}`);
      assert.ok(e.message.includes(why), `${text}: ${e.message}`);
      return true;
    });
  }
});

Deno.test("forward_spec: SERVICE, SERVICE.flor and SERVICE.<cluster>.flor, with or without :PORT", () => {
  assert.deepEqual(parseForwardTarget(ACME, "db"), { service: "db" });
  assert.deepEqual(parseForwardTarget(ACME, "db.flor"), { service: "db" });
  assert.deepEqual(parseForwardTarget(ACME, "DB.acme.flor:5432"), { service: "db", port: 5432 });
  assert.deepEqual(parseForwardTarget(ACME, "db:5432"), { service: "db", port: 5432 });
  for (const bad of ["db.other.flor", "db.example.com", "10.0.0.5:5432", "", "db:99999", "-x"]) {
    assert.throws(() => parseForwardTarget(ACME, bad), ForwardSpecError, bad);
  }
});

Deno.test("forward_spec: the service's port from the map unless one is given; 0 when unknown", () => {
  const cluster = loadCluster(
    YAML.stringify({
      cluster: "acme",
      nodes: { n1: { endpoint: "127.0.0.1:7101" } },
      services: {
        db: { node: "n1", target: "127.0.0.1:5432", allow: ["user:alice"] },
        web: { node: "n1", target: "127.0.0.1:8080", port: 80, allow: ["user:alice"] },
      },
      users: { alice: {} },
    }),
    "cluster.yaml",
  );
  assert.equal(forwardPort(cluster, parseForward(cluster, "1", "db")), 5432);
  assert.equal(forwardPort(cluster, parseForward(cluster, "1", "web")), 80);
  assert.equal(forwardPort(cluster, parseForward(cluster, "1", "web:81")), 81);
  assert.equal(forwardPort(cluster, parseForward(cluster, "1", "gone")), 0);
});

Deno.test("forward_spec: the flor.yaml lines for a runtime forward parse back to it", () => {
  for (const listen of ["15432", "[::1]:15432"]) {
    const spec = parseForward(ACME, listen, "db:5432");
    const back = YAML.parse(forwardYaml(spec)).forwards[0];
    assert.deepEqual(parseForward(ACME, back.listen, back.service), spec);
  }
});

Deno.test("forward_spec: a new flor.yaml keeps the previous one's forwards, unless it has its own", () => {
  const base = "version: 1\ncluster: acme\n";
  const mine = base + "forwards:\n  - listen: 15432\n    service: db\n";
  const kept = YAML.parse(keepForwards(mine, base));
  assert.deepEqual(kept.forwards, [{ listen: 15432, service: "db" }]);
  assert.equal(kept.cluster, "acme");
  const own = base + "forwards:\n  - listen: 1\n    service: web\n";
  assert.equal(keepForwards(mine, own), own);
  assert.equal(keepForwards(undefined, base), base);
  assert.equal(keepForwards(base, base), base);
  assert.equal(keepForwards("forwards: [unclosed", base), base);
});

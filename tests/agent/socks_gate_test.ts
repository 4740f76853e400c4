/**
 * The SOCKS gate without sockets: every refusal of a connection at accept and of a CONNECT
 * request, with its reply code, reason and event, and the tunnel decision when all pass.
 */
import assert from "node:assert/strict";
import {
  admitConnection,
  type ConnectCaller,
  type ConnectCounts,
  type ConnectLimits,
  decideConnect,
} from "../../agent/socks_gate.ts";
import { parseCidr } from "../../lib/cidr.ts";
import { loadCluster } from "../../lib/cluster.ts";
import { Command, Reply, type Request } from "../../lib/socks5.ts";

const CLUSTER = loadCluster(
  `cluster: acme
nodes:
  n1: { endpoint: 127.0.0.1:7101 }
users:
  alice: { groups: [devs] }
  bob: {}
gateways:
  office:
    listen: 192.168.1.10:1080
    allow_cidr: [192.168.1.0/24]
    clients:
      printer: { services: [files] }
services:
  web:
    node: n1
    target: 127.0.0.1:8080
    allow: [group:devs]
  files:
    node: n1
    target: 10.0.0.5:445
    allow: [gateway:office]
  wiki:
    node: n1
    target: 10.0.0.6:80
    allow: [gateway:office]
`,
  "cluster.yaml",
);

const ALICE: ConnectCaller = { principal: { kind: "user", name: "alice" } };
const PRINTER: ConnectCaller = {
  principal: { kind: "gateway", name: "office" },
  lanClient: "printer",
  services: new Set(["files"]),
};
const LIMITS: ConnectLimits = { maxTunnels: 10, maxPerClient: 2 };
const IDLE: ConnectCounts = { tunnels: 0, ofClient: 0 };

const to = (host: string, port: number, type: "domain" | "ipv4" = "domain"): Request => ({
  command: Command.CONNECT,
  address: { type, host },
  port,
});

function refusal(caller: ConnectCaller, req: Request, counts = IDLE) {
  const d = decideConnect(caller, req, CLUSTER, LIMITS, counts);
  assert.ok(!d.open, "expected a refusal");
  return d;
}

Deno.test("socks gate: a permitted request opens a tunnel to the service's node", () => {
  assert.deepEqual(decideConnect(ALICE, to("web.flor", 8080), CLUSTER, LIMITS, IDLE), {
    open: true,
    node: "n1",
    service: "web",
    port: 8080,
  });
  assert.deepEqual(decideConnect(PRINTER, to("files.acme.flor", 445), CLUSTER, LIMITS, IDLE), {
    open: true,
    node: "n1",
    service: "files",
    port: 445,
  });
});

Deno.test("socks gate: a command other than CONNECT replies 0x07", () => {
  const d = refusal(ALICE, { ...to("web.flor", 8080), command: Command.BIND });
  assert.equal(d.reply, Reply.COMMAND_NOT_SUPPORTED);
  assert.equal(d.reason, "command");
});

Deno.test("socks gate: a raw IP destination replies 0x02", () => {
  const d = refusal(ALICE, to("127.0.0.1", 8080, "ipv4"));
  assert.equal(d.reply, Reply.NOT_ALLOWED);
  assert.equal(d.reason, "raw_ip");
  assert.match(d.message, /<service>\.flor/);
});

Deno.test("socks gate: a name that is not a service replies 0x04", () => {
  for (const host of ["example.com", "nope.flor", "web.other.flor"]) {
    const d = refusal(ALICE, to(host, 80));
    assert.equal(d.reply, Reply.HOST_UNREACHABLE, host);
    assert.equal(d.reason, "unknown_service");
  }
});

Deno.test("socks gate: a gateway client outside its service list replies 0x02 with an event", () => {
  const d = refusal(PRINTER, to("wiki.flor", 80));
  assert.equal(d.reply, Reply.NOT_ALLOWED);
  assert.equal(d.reason, "client_not_allowed");
  assert.deepEqual(d.denied, { side: "gateway", service: "wiki" });
  assert.deepEqual(d.event, {
    name: "access.denied",
    fields: { principal: "gateway:office", lan_client: "printer", service: "wiki" },
  });
});

Deno.test("socks gate: at max_tunnels a request replies 0x01 (capacity)", () => {
  const d = refusal(ALICE, to("web.flor", 8080), { tunnels: 10, ofClient: 0 });
  assert.equal(d.reply, Reply.GENERAL_FAILURE);
  assert.equal(d.reason, "capacity");
  assert.ok(
    decideConnect(ALICE, to("web.flor", 8080), CLUSTER, LIMITS, { tunnels: 9, ofClient: 0 }).open,
  );
});

Deno.test("socks gate: a LAN client at its connection limit replies 0x01 (client_limit)", () => {
  const d = refusal(PRINTER, to("files.flor", 445), { tunnels: 2, ofClient: 2 });
  assert.equal(d.reply, Reply.GENERAL_FAILURE);
  assert.equal(d.reason, "client_limit");
  assert.match(d.message, /printer has 2 connections open/);
  // The per-client limit is for LAN clients only.
  assert.ok(
    decideConnect(ALICE, to("web.flor", 8080), CLUSTER, LIMITS, { tunnels: 2, ofClient: 2 }).open,
  );
});

Deno.test("socks gate: policy denials reply as the node would (0x02, 0x04)", () => {
  const bob = { principal: { kind: "user" as const, name: "bob" } };
  const notAllowed = refusal(bob, to("web.flor", 8080));
  assert.equal(notAllowed.reply, Reply.NOT_ALLOWED);
  assert.equal(notAllowed.reason, "not_allowed");
  assert.deepEqual(notAllowed.denied, { side: "client", service: "web" });
  assert.equal(notAllowed.event, undefined);
  const wrongPort = refusal(ALICE, to("web.flor", 80));
  assert.equal(wrongPort.reply, Reply.NOT_ALLOWED);
  assert.equal(wrongPort.reason, "wrong_port");
  // A well-formed name under .flor that the map lacks: the policy's unknown_service.
  const ghost = refusal(ALICE, to("ghost.flor", 80));
  assert.equal(ghost.reply, Reply.HOST_UNREACHABLE);
  assert.deepEqual(ghost.denied, { side: "client", service: "unknown" });
});

Deno.test("socks gate: prototype names are not services", () => {
  for (const host of ["constructor.flor", "tostring.flor"]) {
    assert.equal(refusal(ALICE, to(host, 80)).reason, "unknown_service");
  }
});

const EDGE = { maxConnections: 5, maxPerSource: 2, allowed: [parseCidr("192.168.1.0/24")] };

Deno.test("socks gate: a source outside allow_cidr is refused at accept", () => {
  const a = admitConnection("10.0.0.9", { total: 0, fromSource: 0 }, EDGE);
  assert.deepEqual(a.admit ? undefined : a.reason, "source_denied");
  assert.ok(admitConnection("192.168.1.9", { total: 0, fromSource: 0 }, EDGE).admit);
});

Deno.test("socks gate: a source at its connection cap is refused at accept", () => {
  const a = admitConnection("192.168.1.9", { total: 2, fromSource: 2 }, EDGE);
  assert.deepEqual(a.admit ? undefined : a.reason, "source_limit");
});

Deno.test("socks gate: at the total connection cap every source is refused at accept", () => {
  const a = admitConnection("192.168.1.9", { total: 5, fromSource: 0 }, EDGE);
  assert.deepEqual(a.admit ? undefined : a.reason, "total_limit");
  // An agent without a gateway: no networks and no per-source cap, only the total.
  assert.ok(admitConnection("127.0.0.1", { total: 4, fromSource: 4 }, { maxConnections: 5 }).admit);
  const b = admitConnection("127.0.0.1", { total: 5, fromSource: 5 }, { maxConnections: 5 });
  assert.deepEqual(b.admit ? undefined : b.reason, "total_limit");
});

import assert from "node:assert/strict";
import { allowedFor, LAN_SERVICE, serviceSpecs, userSpecs } from "./cluster_shape.ts";
import { nodeSpecs } from "./topology.ts";

Deno.test("shape: 4 nodes split over two sites, each on its own address", () => {
  const nodes = nodeSpecs(4);
  assert.deepEqual(nodes.map((n) => `${n.name}@${n.site}:${n.addr}`), [
    "n1@a:10.1.1.2",
    "n2@a:10.1.2.2",
    "n3@b:10.2.3.2",
    "n4@b:10.2.4.2",
  ]);
  assert.deepEqual(nodeSpecs(3).map((n) => n.site), ["a", "a", "b"]);
});

Deno.test("shape: 16 services cover every kind on every node, plus the LAN service", () => {
  const services = serviceSpecs(nodeSpecs(4), 16, "10.1.250.2");
  assert.equal(services.length, 17);
  assert.equal(new Set(services.map((s) => s.name)).size, 17, "names are unique");
  for (const kind of ["web", "echo", "ssh"]) {
    const nodes = new Set(services.filter((s) => s.kind === kind).map((s) => s.node));
    assert.deepEqual([...nodes].sort(), ["n1", "n2", "n3", "n4"], kind);
  }
  const lan = services.find((s) => s.name === LAN_SERVICE)!;
  assert.equal(lan.target, "10.1.250.2:8080");
  assert.ok(lan.allow.includes("gateway:office"));
  const ssh = services.find((s) => s.kind === "ssh")!;
  assert.equal(ssh.target, "10.1.1.2:22");
  assert.equal(new Set(services.map((s) => `${s.node}:${s.port}`)).size, 17, "no port clash");
});

Deno.test("shape: users alternate groups; ops may ssh, devs may reach the LAN", () => {
  const users = userSpecs(4);
  assert.deepEqual(users.map((u) => `${u.name}:${u.group}:${u.socks}`), [
    "u1:devs:1080",
    "u2:ops:1081",
    "u3:devs:1082",
    "u4:ops:1083",
  ]);
  const services = serviceSpecs(nodeSpecs(2), 8, "10.1.250.2");
  const kinds = (i: number) => new Set(allowedFor(users[i], services).map((s) => s.kind));
  assert.deepEqual([...kinds(0)].sort(), ["echo", "lan", "web"]);
  assert.deepEqual([...kinds(1)].sort(), ["echo", "ssh", "web"]);
});

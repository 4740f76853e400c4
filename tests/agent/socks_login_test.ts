/**
 * SOCKS logins without sockets, with real PBKDF2: who a username/password selects, that a
 * gateway's unknown names cost a hash like known ones, and that only wrong passwords are
 * limited per source.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { LOGIN_FAILURE_BURST, LOGIN_FAILURES_PER_S } from "../../agent/login_gate.ts";
import type { LocalIdentity, Runtime } from "../../agent/runtime.ts";
import { createSocksLogins } from "../../agent/socks_login.ts";
import { loadCluster } from "../../lib/cluster.ts";
import { hashPassword } from "../../lib/password_hash.ts";

const CLUSTER = loadCluster(
  `cluster: acme
nodes:
  n1: { endpoint: 127.0.0.1:7101 }
gateways:
  office:
    listen: 192.168.1.10:1080
    allow_cidr: [192.168.1.0/24]
    clients:
      printer: { services: [files] }
      gone: { services: [files] }
services:
  files:
    node: n1
    target: 10.0.0.5:445
    allow: [gateway:office]
  web:
    node: n1
    target: 127.0.0.1:8080
    allow: [service:files]
`,
  "cluster.yaml",
);

function identity(id: string, password?: string): LocalIdentity {
  const [kind, name] = id.split(":");
  return { id, principal: { kind, name }, password } as unknown as LocalIdentity;
}

async function gatewayRuntime(): Promise<Runtime> {
  return {
    loaded: { config: { gateway: { name: "office" } } },
    view: { cluster: CLUSTER },
    identities: new Map([["gateway:office", identity("gateway:office")]]),
    // "gone" is in the map but has no hash in the bundle; "ghost" has a hash but is not in the map.
    gatewayClients: new Map([
      ["printer", await hashPassword("right")],
      ["ghost", await hashPassword("right")],
    ]),
  } as unknown as Runtime;
}

Deno.test("socks login: a gateway client with its password speaks as the gateway", async () => {
  const rt = await gatewayRuntime();
  const logins = createSocksLogins(() => rt);
  const caller = await logins.gateway("office", "192.168.1.5", "printer", "right");
  assert.ok(caller && caller !== "limited");
  assert.equal(caller.identity.id, "gateway:office");
  assert.equal(caller.lanClient, "printer");
  assert.deepEqual([...caller.services!], ["files"]);
});

Deno.test("socks login: wrong passwords, unknown and half-configured names all fail", async () => {
  const rt = await gatewayRuntime();
  const logins = createSocksLogins(() => rt);
  for (
    const [user, pass] of [
      ["printer", "wrong"],
      ["nobody", "right"],
      ["gone", "right"],
      [
        "ghost",
        "right",
      ],
      ["constructor", "right"],
      ["__proto__", "right"],
    ]
  ) {
    assert.equal(await logins.gateway("office", "192.168.1.5", user, pass), undefined, user);
  }
});

Deno.test("socks login: an unknown name costs a hash like a known one", async () => {
  const rt = await gatewayRuntime();
  const logins = createSocksLogins(() => rt);
  // CPU time of this process (all threads: WebCrypto's PBKDF2 runs off the main one), not
  // wall time: equal work is what makes the answers equally fast, and on a loaded machine
  // every one of 9 wall-clock samples could be preempted (min of 9 was 3.0 ms known vs
  // 3.9 ms unknown at load 5; CPU time stayed 1.4-1.6 ms for both). A refusal without the
  // hash costs a few hundredths of it.
  const time = async (user: string, i: number) => {
    const t0 = process.cpuUsage();
    await logins.gateway("office", `192.168.1.${i}`, user, "wrong");
    const used = process.cpuUsage(t0);
    return (used.user + used.system) / 1000;
  };
  await time("printer", 100); // warm up WebCrypto and the dummy hash
  const known: number[] = [];
  const unknown: number[] = [];
  for (let i = 0; i < 9; i++) {
    known.push(await time("printer", i));
    unknown.push(await time(`nobody${i}`, i));
  }
  const [mk, mu] = [Math.min(...known), Math.min(...unknown)];
  assert.ok(mu >= 0.5 * mk && mu <= 2 * mk, `CPU: known ${mk} ms vs unknown ${mu} ms`);
});

Deno.test("socks login: correct passwords are never limited, wrong ones are", async () => {
  const rt = await gatewayRuntime();
  const logins = createSocksLogins(() => rt);
  const src = "192.168.1.7";
  const ok = await Promise.all(
    Array.from({ length: 60 }, () => logins.gateway("office", src, "printer", "right")),
  );
  assert.ok(ok.every((c) => c && c !== "limited"));
  const t0 = performance.now();
  const wrong = await Promise.all(
    Array.from({ length: 40 }, () => logins.gateway("office", src, "printer", "guess")),
  );
  // The burst, plus what the bucket refilled while the hashes ran.
  const refill = Math.ceil(LOGIN_FAILURES_PER_S * (performance.now() - t0) / 1000);
  const checked = wrong.filter((c) => c === undefined).length;
  assert.ok(
    checked >= LOGIN_FAILURE_BURST && checked <= LOGIN_FAILURE_BURST + refill,
    `${checked}`,
  );
  assert.equal(wrong.filter((c) => c === "limited").length, 40 - checked);
});

Deno.test("socks login: a local workload selects its identity by name or id", () => {
  const rt = {
    loaded: { config: {} },
    identities: new Map([
      ["node:n1", identity("node:n1")],
      ["service:web", identity("service:web", "pw-web")],
    ]),
  } as unknown as Runtime;
  const logins = createSocksLogins(() => rt);
  assert.equal(logins.local("web", "pw-web")?.identity.id, "service:web");
  assert.equal(logins.local("service:web", "pw-web")?.identity.id, "service:web");
  assert.equal(logins.local("web", "nope"), undefined);
  // The node's own identity has no password and cannot be selected.
  assert.equal(logins.local("n1", ""), undefined);
  assert.equal(logins.local("constructor", ""), undefined);
});

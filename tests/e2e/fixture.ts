/**
 * The cluster most end-to-end tests share, built with the real florctl exactly like the
 * operator walkthrough in the README, on ports picked free at run time:
 *
 *   n1: web (HTTP, allow group:devs), echo (allow group:devs)
 *   n2: ci (echo, allow user:bob, service:web), dead (nothing listening, allow user:bob)
 *   users: alice (group devs), bob
 */
import { join } from "node:path";
import { nodeServerName } from "../../lib/identity.ts";
import { importPrivateKeyPem, parseCertificate } from "../../lib/pki.ts";
import type { DialNode } from "../../lib/quic_client.ts";
import { ALPN } from "../../lib/protocol.ts";
import {
  type AgentProcess,
  florctlOk,
  freeTcpPort,
  freeUdpPort,
  serviceAddArgs,
  startEcho,
  startFlor,
} from "./harness.ts";

export interface Fixture {
  root: string;
  dir: string;
  ports: { n1: number; n2: number; web: number; echo: number; ci: number; dead: number };
  bundles: { n1: string; n2: string; alice: string; bob: string };
  http: Deno.HttpServer;
  echo: { port: number; close(): void };
  ci: { port: number; close(): void };
  cleanup(): Promise<void>;
}

export interface ExtraService {
  name: string;
  node: "n1" | "n2";
  port: number;
  allow: string;
}

/** What the fixture and `deno task demo` (tests/demo/cluster.ts) both build: cluster acme,
 * nodes n1 and n2 on 127.0.0.1 at these UDP ports, alice (group devs), bob, and web on n1 for
 * group:devs. `c` runs one florctl command in the cluster's directory. */
export async function addAcmeCore(
  c: (...args: string[]) => Promise<unknown>,
  ports: { n1: number; n2: number; web: number },
): Promise<void> {
  await c("init", "acme");
  await c("node", "add", "n1", "--endpoint", `127.0.0.1:${ports.n1}`);
  await c("node", "add", "n2", "--endpoint", `127.0.0.1:${ports.n2}`);
  await c("user", "add", "alice", "--group", "devs");
  await c("user", "add", "bob");
  await c(...serviceAddArgs("web", "n1", `127.0.0.1:${ports.web}`, "group:devs"));
}

export async function buildFixture(extra: ExtraService[] = []): Promise<Fixture> {
  const root = await Deno.makeTempDir({ prefix: "florete-e2e-" });
  const dir = join(root, "cluster");
  const http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("hello from web\n"),
  );
  const echo = startEcho();
  const ci = startEcho();
  const ports = {
    n1: freeUdpPort(),
    n2: freeUdpPort(),
    web: http.addr.port,
    echo: echo.port,
    ci: ci.port,
    dead: freeTcpPort(),
  };
  const c = (...args: string[]) => florctlOk([...args, "--dir", dir]);
  await addAcmeCore(c, ports);
  await c(...serviceAddArgs("echo", "n1", `127.0.0.1:${ports.echo}`, "group:devs"));
  await c(...serviceAddArgs("ci", "n2", `127.0.0.1:${ports.ci}`, "user:bob,service:web"));
  await c(...serviceAddArgs("dead", "n2", `127.0.0.1:${ports.dead}`, "user:bob"));
  for (const x of extra) {
    await c(...serviceAddArgs(x.name, x.node, `127.0.0.1:${x.port}`, x.allow));
  }
  await c("check");
  const bundles = {
    n1: join(root, "b-n1"),
    n2: join(root, "b-n2"),
    alice: join(root, "b-alice"),
    bob: join(root, "b-bob"),
  };
  await c("bundle", "node", "n1", "--out", bundles.n1);
  await c("bundle", "node", "n2", "--out", bundles.n2);
  await c("bundle", "user", "alice", "--out", bundles.alice);
  await c("bundle", "user", "bob", "--out", bundles.bob);
  return {
    root,
    dir,
    ports,
    bundles,
    http,
    echo,
    ci,
    async cleanup() {
      echo.close();
      ci.close();
      await http.shutdown();
      await Deno.remove(root, { recursive: true }).catch(() => {});
    },
  };
}

/** Flags so agents on one machine do not clash: a fresh SOCKS port, and metrics on a fresh
 * port when asked for (off otherwise). */
export function agentFlags(o: { metrics?: boolean } = {}) {
  const socks = freeTcpPort();
  const metrics = o.metrics ? freeTcpPort() : undefined;
  return {
    flags: ["--socks", `127.0.0.1:${socks}`, "--metrics", metrics ? `127.0.0.1:${metrics}` : "off"],
    socks,
    metrics,
  };
}

/** `florctl enroll user alice` into a one-file bundle (for `flor join`) whose agent listens for
 * SOCKS on 127.0.0.1:`socks` with metrics off, so it does not clash with the node on 9464. */
export function enrollAlice(clusterDir: string, file: string, socks: number): Promise<string> {
  return florctlOk([
    "enroll",
    "user",
    "alice",
    "--out",
    file,
    "--socks",
    `127.0.0.1:${socks}`,
    "--metrics",
    "off",
    "--dir",
    clusterDir,
  ]);
}

/** Starts the node n1, then alice's agent (`user` holds its ports): how most tunnel tests
 * begin. */
export async function startNodeAndAlice(
  fx: Fixture,
  start: typeof startFlor,
  o: { metrics?: boolean } = {},
) {
  const n1 = await start(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
  const user = agentFlags(o);
  const alice = await start(join(fx.bundles.alice, "flor.yaml"), user.flags);
  return { n1, alice, user };
}

/** Appends top-level `yaml` to a bundle's flor.yaml; returns the file's path. */
export async function extendAgentConfig(bundle: string, yaml: string): Promise<string> {
  const config = join(bundle, "flor.yaml");
  await Deno.writeTextFile(config, yaml, { append: true });
  return config;
}

/** Runs `body` on a fresh fixture; every agent it starts through `start` is stopped and the
 * fixture removed afterwards, whatever happens. */
export async function withFixture(
  body: (fx: Fixture, start: typeof startFlor) => Promise<void>,
  extra: ExtraService[] = [],
) {
  const fx = await buildFixture(extra);
  const agents: AgentProcess[] = [];
  const start: typeof startFlor = async (...args) => {
    const a = await startFlor(...args);
    agents.push(a);
    return a;
  };
  try {
    await body(fx, start);
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await fx.cleanup();
  }
}

/** A QUIC connection to the fixture's node n1 that has not authenticated yet: for tests that
 * speak florete/1 themselves, or stay silent, to see what the node does. */
export function dialUnauthenticated(
  port: number,
  caPem: string,
  more: { maxConcurrentBidirectionalStreams?: number; endpoint?: Deno.QuicEndpoint } = {},
): Promise<Deno.QuicConn> {
  return Deno.connectQuic<false>({
    hostname: "127.0.0.1",
    port,
    serverName: nodeServerName("acme", "n1"),
    caCerts: [caPem],
    alpnProtocols: [ALPN],
    ...more,
  });
}

/** What connectNode (lib/quic_client.ts) needs to reach the fixture's n1 as alice, the way
 * her agent does: for tests that speak florete/1 on an authenticated connection themselves. */
export async function aliceToN1(fx: Fixture): Promise<DialNode> {
  const file = (f: string) => Deno.readTextFile(join(fx.bundles.alice, f));
  return {
    cluster: "acme",
    node: "n1",
    endpoint: { host: "127.0.0.1", port: fx.ports.n1 },
    caPem: await Deno.readTextFile(join(fx.dir, "pki", "ca.crt")),
    cert: parseCertificate(await file("certs/user-alice.crt")),
    key: await importPrivateKeyPem(await file("keys/user-alice.key")),
    as: "user:alice",
  };
}

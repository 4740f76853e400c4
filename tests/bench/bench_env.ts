/**
 * One environment of the bench: where the client, the proxies and the servers run, and
 * what joins them. Loopback is a single fresh namespace (everything on 127.0.0.1, and UDP
 * counters that belong to this run alone); a WAN profile is the emulator's client and
 * server namespaces joined by tests/wan's link. In both, the far end runs the sink and echo
 * servers, the flor node agent and a real sshd; the near end runs the user agent, `ssh -D`
 * and the bench client.
 */
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { type AgentProcess, florctlOk, REPO, startAgentProcess } from "../e2e/harness.ts";
import { createTestbed, type Testbed } from "../e2e/netns.ts";
import { type SshServer, startSshd } from "../e2e/sshd.ts";
import { createWanPair, WAN_PAIR, type WanLink } from "../wan/wan_link.ts";
import type { ClientResult, ClientTask } from "./bench_client.ts";
import type { LinkSpec, Sizes } from "./bench_options.ts";
import { spawnBenchServers } from "./bench_servers.ts";
import { eventLoopLagMs } from "./loop_lag.ts";
import { parseUdpSnmp } from "../../lib/udp_buffer.ts";

/** Fixed ports: every namespace is fresh, so nothing else holds them. */
const PORTS = {
  sink: 9001,
  echo: 9002,
  node: 7101,
  florSocks: 1080,
  sshSocks: 1081,
  nodeMetrics: 9464,
  userMetrics: 9465,
} as const;
/** A scrape of an agent's /metrics on its own namespace's loopback answers in milliseconds. */
const SCRAPE_TIMEOUT_S = 2;
/** A proxy's SOCKS port is usually open within ~100 ms (ssh: handshake and auth first). */
const PROXY_START_TIMEOUT_MS = 20_000;
const POLL_MS = 50;
/** The cipher the issue names for `ssh -D` (AES-NI makes it the fastest OpenSSH offers). */
const SSH_CIPHER = "aes128-gcm@openssh.com";

export interface Proxy {
  /** pids whose peak RSS (VmHWM) is reported for this proxy. */
  pids(): Promise<number[]>;
  stop(): Promise<void>;
}

export interface BenchEnv {
  link: LinkSpec;
  wan?: WanLink;
  /** TCP congestion control of the client's and the server's namespace, and flor's. */
  congestion: { tcpClient: string; tcpServer: string; flor: string };
  node: AgentProcess;
  sshd: SshServer;
  startFlorProxy(): Promise<Proxy & { agent: AgentProcess }>;
  startSshProxy(): Promise<Proxy>;
  runClient(path: "direct" | "ssh" | "flor", sizes: Sizes): Promise<ClientResult>;
  /** Event-loop lag (p99 where exported) of the running user agent and the node agent, ms. */
  florLagMs(): Promise<Record<string, number>>;
  /** The server namespace's UDP RcvbufErrors (/proc/net/snmp), i.e. the node's overflows. */
  udpRcvbufErrors(): Promise<number>;
  destroy(): Promise<void>;
}

export async function createBenchEnv(link: LinkSpec): Promise<BenchEnv> {
  let tb: Testbed;
  let wan: WanLink | undefined;
  let client: string;
  let server: string;
  let serverAddr: string;
  if (link.profile) {
    ({ tb, wan } = await createWanPair(link.profile));
    [client, server, serverAddr] = [WAN_PAIR.client, WAN_PAIR.server, WAN_PAIR.serverAddr];
  } else {
    tb = await createTestbed({ namespaces: ["loop"], links: [] });
    [client, server, serverAddr] = ["loop", "loop", "127.0.0.1"];
  }
  const root = await Deno.makeTempDir({ prefix: "florete-bench-" });
  const cleanups: Array<() => Promise<void>> = [
    () => tb.destroy(),
    () => Deno.remove(root, { recursive: true }).catch(() => {}),
  ];
  const wrap = (ns: string) => ["ip", "netns", "exec", tb.ns[ns]];
  try {
    await spawnBenchServers(tb, server, PORTS.sink, PORTS.echo);
    const bundles = await _cluster(root, `${serverAddr}:${PORTS.node}`);
    const node = await startAgentProcess({
      config: join(bundles.node, "flor.yaml"),
      flags: ["--socks", "off", "--metrics", `127.0.0.1:${PORTS.nodeMetrics}`],
      wrap: wrap(server),
    });
    cleanups.unshift(() => node.stop());
    const sshd = await startSshd({
      address: serverAddr,
      serverWrap: wrap(server),
      clientWrap: wrap(client),
      reuse: false,
    });
    cleanups.unshift(() => sshd.stop());
    const sysctl = async (ns: string) =>
      (await tb.run(ns, ["sysctl", "-n", "net.ipv4.tcp_congestion_control"])).stdout.trim();
    const congestion = {
      tcpClient: await sysctl(client),
      tcpServer: await sysctl(server),
      flor: await _florCongestion(bundles, node),
    };
    const waitPort = (port: number) => _waitListening(tb, client, port);

    return {
      link,
      wan,
      congestion,
      node,
      sshd,
      async startFlorProxy() {
        const agent = await startAgentProcess({
          config: join(bundles.user, "flor.yaml"),
          flags: [
            ...["--socks", `127.0.0.1:${PORTS.florSocks}`],
            ...["--metrics", `127.0.0.1:${PORTS.userMetrics}`],
          ],
          wrap: wrap(client),
        });
        await waitPort(PORTS.florSocks);
        return { agent, pids: () => Promise.resolve([agent.child.pid]), stop: () => agent.stop() };
      },
      startSshProxy: () => _startSshProxy(tb, client, sshd, waitPort),
      async runClient(path, sizes) {
        const task = clientTask(path, serverAddr, sizes);
        const r = await tb.run(client, [
          Deno.execPath(),
          ...["run", "--allow-all", "--config", join(REPO, "deno.json")],
          join(import.meta.dirname!, "bench_client.ts"),
          JSON.stringify(task),
        ]);
        if (r.code !== 0) {
          // A client that finds the network unreachable usually means the emulated link is
          // gone (the forwarder exited, taking its devices along): say so, with its stderr.
          const linkState = wan
            ? await wan.stats().then(() => "the WAN forwarder is still running", (e) => `${e}`)
            : "loopback";
          throw new Error(`bench client (${path}) exited ${r.code} (${linkState}): ${r.stderr}`);
        }
        return JSON.parse(r.stdout) as ClientResult;
      },
      async florLagMs() {
        const out: Record<string, number> = {};
        for (
          const [name, ns, port] of [
            ["user agent", client, PORTS.userMetrics],
            ["node agent", server, PORTS.nodeMetrics],
          ] as const
        ) {
          const r = await tb.run(ns, [
            ...["curl", "-sf", "--max-time", `${SCRAPE_TIMEOUT_S}`],
            `http://127.0.0.1:${port}/metrics`,
          ]);
          const lag = r.code === 0 ? eventLoopLagMs(r.stdout) : undefined;
          if (lag !== undefined) out[name] = lag;
        }
        return out;
      },
      async udpRcvbufErrors() {
        const r = await tb.run(server, ["cat", "/proc/net/snmp"]);
        return parseUdpSnmp(r.stdout)?.receiveBufferErrors ?? 0;
      },
      async destroy() {
        for (const c of cleanups) await c();
      },
    };
  } catch (e) {
    for (const c of cleanups) await c().catch(() => {});
    throw e;
  }
}

/** How the client reaches the sink and the echo server on each path. */
export function clientTask(
  path: "direct" | "ssh" | "flor",
  serverAddr: string,
  sizes: Sizes,
): ClientTask {
  switch (path) {
    case "direct":
      return {
        sink: { host: serverAddr, port: PORTS.sink },
        echo: { host: serverAddr, port: PORTS.echo },
        sizes,
      };
    case "ssh":
      // sshd connects to the servers on its own host.
      return {
        socksPort: PORTS.sshSocks,
        sink: { host: "127.0.0.1", port: PORTS.sink },
        echo: { host: "127.0.0.1", port: PORTS.echo },
        sizes,
      };
    case "flor":
      return {
        socksPort: PORTS.florSocks,
        sink: { host: "sink.flor", port: PORTS.sink },
        echo: { host: "echo.flor", port: PORTS.echo },
        sizes,
      };
  }
}

/** `ssh -D` in the client's namespace: its own connection (no ControlMaster), aes128-gcm. */
async function _startSshProxy(
  tb: Testbed,
  client: string,
  sshd: SshServer,
  waitPort: (port: number) => Promise<void>,
): Promise<Proxy> {
  const ssh = tb.spawn(client, [
    "ssh",
    ...["-F", sshd.config, "-N", "-c", SSH_CIPHER],
    ...["-D", `127.0.0.1:${PORTS.sshSocks}`, "-o", "ExitOnForwardFailure=yes"],
    sshd.host,
  ]);
  const stderr = new Response(ssh.stderr).text();
  const drained = Promise.all([ssh.stdout.cancel(), stderr]);
  const exited = ssh.status.then(async (st) => {
    throw new Error(`bench: ssh -D exited ${st.code} before listening: ${await stderr}`);
  });
  await Promise.race([waitPort(PORTS.sshSocks), exited]);
  exited.catch(() => {}); // its later exit is stop()'s doing
  return {
    pids: async () => [ssh.pid, ...await sshd.sessionPids()],
    async stop() {
      try {
        ssh.kill("SIGTERM");
      } catch {
        // exited
      }
      await ssh.status;
      await drained;
    },
  };
}

/** The operator's steps: a cluster with node n1 and user alice, services sink and echo. */
async function _cluster(root: string, endpoint: string): Promise<{ node: string; user: string }> {
  const dir = join(root, "cluster");
  const c = (...args: string[]) => florctlOk([...args, "--dir", dir]);
  await c("init", "bench");
  await c("node", "add", "n1", "--endpoint", endpoint);
  await c("user", "add", "alice", "--group", "devs");
  for (const [name, port] of [["sink", PORTS.sink], ["echo", PORTS.echo]] as const) {
    await c(
      "service",
      "add",
      name,
      ...["--node", "n1", "--target", `127.0.0.1:${port}`, "--allow", "group:devs"],
    );
  }
  const bundles = { node: join(root, "b-n1"), user: join(root, "b-alice") };
  await c("bundle", "node", "n1", "--out", bundles.node, "--metrics", "off");
  await c("bundle", "user", "alice", "--out", bundles.user, "--metrics", "off");
  return bundles;
}

/**
 * `transport.congestion` from the bundles' flor.yaml (engineer h2's setting), else what the
 * node said at start, else Deno's default, which is Cubic.
 */
async function _florCongestion(
  bundles: { node: string; user: string },
  node: AgentProcess,
): Promise<string> {
  const configured = new Set<string>();
  for (const b of [bundles.node, bundles.user]) {
    const y = parseYaml(await Deno.readTextFile(join(b, "flor.yaml"))) as any;
    if (typeof y?.transport?.congestion === "string") configured.add(y.transport.congestion);
  }
  if (configured.size > 0) return [...configured].join("/");
  const said = node.events.find((e) => typeof e.congestion === "string");
  return said ? String(said.congestion) : "default (Deno: cubic)";
}

/** Polls `ss` in the namespace until something listens on 127.0.0.1:PORT. */
async function _waitListening(tb: Testbed, ns: string, port: number): Promise<void> {
  const deadline = Date.now() + PROXY_START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const r = await tb.run(ns, ["ss", "-Hltn", `sport = :${port}`]);
    if (r.stdout.trim() !== "") return;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`bench: nothing listened on ${ns}:${port} within ${PROXY_START_TIMEOUT_MS} ms`);
}

/**
 * `deno task demo`: a whole cluster on this machine, as separate processes.
 *
 * Builds a cluster with florctl in a temporary directory (nodes n1 and n2, user alice in
 * group devs, a demo HTTP service `web` on n1), starts both node agents, alice's agent and
 * the HTTP service, prints the curl command and runs until Ctrl-C.
 * `--smoke` makes one request through the tunnel and exits 0 on success.
 */
import { join } from "node:path";
import {
  type AgentProcess,
  florctlOk,
  freeTcpPort,
  freeUdpPort,
  readToEnd,
  socksConnect,
  startFlor,
} from "../e2e/harness.ts";

const smoke = Deno.args.includes("--smoke");

/** The README's ports when they are free, others when not (a second demo, a busy 1080). */
function prefer(port: number, free: () => number, probe: (p: number) => boolean): number {
  return probe(port) ? port : free();
}
const tcpFree = (p: number) => {
  try {
    Deno.listen({ hostname: "127.0.0.1", port: p }).close();
    return true;
  } catch {
    return false;
  }
};
const udpFree = (p: number) => {
  try {
    Deno.listenDatagram({ hostname: "127.0.0.1", port: p, transport: "udp" }).close();
    return true;
  } catch {
    return false;
  }
};

const root = await Deno.makeTempDir({ prefix: "florete-demo-" });
const dir = join(root, "cluster");
const ports = {
  n1: prefer(7101, freeUdpPort, udpFree),
  n2: prefer(7102, freeUdpPort, udpFree),
  socks: prefer(1080, freeTcpPort, tcpFree),
  web: prefer(8080, freeTcpPort, tcpFree),
};

const web = Deno.serve(
  { hostname: "127.0.0.1", port: ports.web, onListen: () => {} },
  (req) =>
    new Response(
      `Hello from the web service behind node n1.\nYou asked for ${new URL(req.url).pathname}\n`,
    ),
);

const step = (s: string) => console.log(`\x1b[1m==> ${s}\x1b[0m`);
const c = async (...args: string[]) => {
  console.log(`    florctl ${args.join(" ")}`);
  await florctlOk([...args, "--dir", dir]);
};

const agents: AgentProcess[] = [];
async function shutdown(code: number): Promise<never> {
  await Promise.all(agents.map((a) => a.stop()));
  await web.shutdown();
  await Deno.remove(root, { recursive: true }).catch(() => {});
  Deno.exit(code);
}

try {
  step(`building cluster 'acme' in ${dir}`);
  await c("init", "acme");
  await c("node", "add", "n1", "--endpoint", `127.0.0.1:${ports.n1}`);
  await c("node", "add", "n2", "--endpoint", `127.0.0.1:${ports.n2}`);
  await c("user", "add", "alice", "--group", "devs");
  await c(
    "service",
    "add",
    "web",
    "--node",
    "n1",
    "--target",
    `127.0.0.1:${ports.web}`,
    "--allow",
    "group:devs",
  );
  await c("check");
  const b = (name: string) => join(root, `bundle-${name}`);
  await c("bundle", "node", "n1", "--out", b("n1"), "--metrics", "off");
  await c("bundle", "node", "n2", "--out", b("n2"), "--metrics", "off");
  await c(
    "bundle",
    "user",
    "alice",
    "--out",
    b("alice"),
    "--socks",
    `127.0.0.1:${ports.socks}`,
    "--metrics",
    "off",
  );

  step("starting agents (each a separate flor process)");
  for (const name of ["n1", "n2", "alice"]) {
    const a = await startFlor(join(b(name), "flor.yaml"));
    agents.push(a);
    const started = a.events.find((e) => e.message === "agent.started")!;
    console.log(`    flor ${name}: quic ${started.quic}, socks ${started.socks}`);
  }

  const url = `http://web.flor:${ports.web}/`;
  if (smoke) {
    step(`smoke test: GET ${url} through alice's agent`);
    const s = await socksConnect(ports.socks, "web.flor", ports.web);
    if (s.reply !== 0) throw new Error(`SOCKS reply ${s.reply}`);
    await s.conn.write(new TextEncoder().encode(`GET / HTTP/1.0\r\nHost: web.flor\r\n\r\n`));
    const text = new TextDecoder().decode(await readToEnd(s.conn));
    s.conn.close();
    if (!text.startsWith("HTTP/1.") || !text.includes("Hello from the web service")) {
      throw new Error(`unexpected response:\n${text}`);
    }
    console.log(text.split("\r\n\r\n")[1].trimEnd().replace(/^/gm, "    "));
    step("smoke test passed");
    await shutdown(0);
  }

  step("cluster is up. Try:");
  console.log(`\n    curl --socks5-hostname 127.0.0.1:${ports.socks} ${url}\n`);
  console.log(`    cluster directory: ${dir}   (removed on exit)\n    Ctrl-C to stop.`);
  // Ctrl-C reaches the agents too (same process group): whichever comes first, a signal
  // means a normal stop; an agent exiting on its own means something went wrong.
  const signalled = new Promise<"signal">((resolve) => {
    Deno.addSignalListener("SIGINT", () => resolve("signal"));
    Deno.addSignalListener("SIGTERM", () => resolve("signal"));
  });
  const exited = Promise.race(agents.map((a) => a.child.status)).then(() => "exit" as const);
  const why = await Promise.race([signalled, exited]);
  if (why === "exit") {
    // Give a Ctrl-C that raced the agents' exit a moment to be seen.
    const late = await Promise.race([signalled, new Promise((r) => setTimeout(r, 300))]);
    if (late !== "signal") {
      console.error("an agent exited; stopping the demo");
      await shutdown(1);
    }
  }
  console.log("\nstopping the demo");
  await shutdown(0);
} catch (e) {
  console.error(`demo failed: ${(e as Error).message}`);
  for (const a of agents) console.error(a.stderr());
  await shutdown(1);
}

/**
 * `deno task demo`: a whole cluster on this machine, as separate processes.
 *
 * Builds a cluster with florctl in a temporary directory (nodes n1 and n2, user alice in
 * group devs, user bob, a demo HTTP service `web` on n1 for devs and `payroll` on n2 for bob
 * only), starts both node agents, alice's agent and the HTTP services, prints what to try (a
 * working curl, a refused one, `florctl status`, the PAC URL for a browser) and then a live,
 * readable feed of the agents' events until Ctrl-C.
 * `--smoke` tries each suggestion once and exits 0 when all behave as printed.
 */
import { join } from "node:path";
import {
  type AgentProcess,
  flor,
  florctlOk,
  freeTcpPort,
  freeUdpPort,
  readToEnd,
  REPO,
  serviceAddArgs,
  socksConnect,
  startAgentProcess,
} from "../e2e/harness.ts";
import { addAcmeCore } from "../e2e/fixture.ts";
import { feedLine } from "./event_feed.ts";

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
  payroll: prefer(8081, freeTcpPort, tcpFree),
  pac: prefer(9465, freeTcpPort, tcpFree),
};

const web = Deno.serve(
  { hostname: "127.0.0.1", port: ports.web, onListen: () => {} },
  (req) =>
    new Response(
      `Hello from the web service behind node n1.\nYou asked for ${new URL(req.url).pathname}\n`,
    ),
);
const payroll = Deno.serve(
  { hostname: "127.0.0.1", port: ports.payroll, onListen: () => {} },
  () => new Response("Payroll: for bob's eyes only.\n"),
);

const step = (s: string) => console.log(`\x1b[1m==> ${s}\x1b[0m`);
const c = async (...args: string[]) => {
  console.log(`    florctl ${args.join(" ")}`);
  await florctlOk([...args, "--dir", dir]);
};

const agents: AgentProcess[] = [];
/** Events are printed once the instructions are on screen. */
let live = false;
async function shutdown(code: number): Promise<never> {
  live = false; // agents going down on purpose are not news
  await Promise.all(agents.map((a) => a.stop()));
  await web.shutdown();
  await payroll.shutdown();
  await Deno.remove(root, { recursive: true }).catch(() => {});
  Deno.exit(code);
}

try {
  step(`building cluster 'acme' in ${dir}`);
  await addAcmeCore(c, ports);
  await c(...serviceAddArgs("payroll", "n2", `127.0.0.1:${ports.payroll}`, "user:bob"));
  await c("check");
  const b = (name: string) => join(root, `bundle-${name}`);
  // Node bundles as `florctl enroll` would make them, so `florctl status` finds the config it
  // expects; the nodes run with --metrics off so they do not clash on 9464.
  await c("bundle", "node", "n1", "--out", b("n1"));
  await c("bundle", "node", "n2", "--out", b("n2"));
  await c(
    "bundle",
    "user",
    "alice",
    "--out",
    b("alice"),
    "--socks",
    `127.0.0.1:${ports.socks}`,
    "--metrics",
    `127.0.0.1:${ports.pac}`,
  );

  step("starting agents (each a separate flor process)");
  for (const name of ["n1", "n2", "alice"]) {
    const a = await startAgentProcess({
      config: join(b(name), "flor.yaml"),
      flags: name === "alice" ? [] : ["--metrics", "off"],
      onEvent: (e) => {
        const line = live && feedLine(name, e);
        if (line) console.log(`    ${line}`);
      },
    });
    agents.push(a);
    const started = a.events.find((e) => e.message === "agent.started")!;
    console.log(`    flor ${name}: quic ${started.quic}, socks ${started.socks}`);
  }

  const url = `http://web.flor:${ports.web}/`;
  const refusedUrl = `http://payroll.flor:${ports.payroll}/`;
  const pacUrl = `http://127.0.0.1:${ports.pac}/proxy.pac`;
  const status = ["status", "--dir", dir];
  if (smoke) {
    await smokeTest(url, refusedUrl, pacUrl, status);
    await shutdown(0);
  }

  step("cluster is up. Try, in another terminal:");
  const curl = `curl --socks5-hostname 127.0.0.1:${ports.socks}`;
  console.log(`
    ${curl} ${url}
        works: alice is in group devs, which web allows
    ${curl} ${refusedUrl}
        refused (curl: 97): payroll allows only user:bob; the feed below says why
    deno task florctl ${status.join(" ")}
        the nodes as the operator sees them, over the mesh
    chromium --proxy-pac-url=${pacUrl} ${url}
        a browser: *.flor through alice's agent, the rest directly (${pacUrl})
    deno task flor ${forwardArgs("15432").join(" ")}
        then curl http://127.0.0.1:15432/ (or psql, RDP...: apps without SOCKS)

    cluster directory: ${dir}   (removed on exit)`);
  step("live events (Ctrl-C to stop)");
  live = true;
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

/** `flor forward PORT web` for alice's running agent. */
function forwardArgs(port: string): string[] {
  return ["forward", port, "web", "--config", join(root, "bundle-alice", "flor.yaml")];
}

/** Each suggestion once, as a user would try it: the working request, the refused one (with
 * the event that explains it), florctl status and the PAC file. */
async function smokeTest(url: string, refusedUrl: string, pacUrl: string, status: string[]) {
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
  step(`smoke test: ${refusedUrl} is refused, and the feed says why`);
  const r = await socksConnect(ports.socks, "payroll.flor", ports.payroll);
  r.conn.close();
  if (r.reply !== 2) throw new Error(`payroll: SOCKS reply ${r.reply}, expected 2 (not allowed)`);
  const alice = agents[2];
  const refused = await alice.waitFor("socks.refused");
  console.log(`    ${feedLine("alice", refused)}`);
  step("smoke test: florctl status");
  console.log((await florctlOk(status, { cwd: REPO })).trimEnd().replace(/^/gm, "    "));
  const local = freeTcpPort();
  step(`smoke test: flor forward ${local} web, then GET http://127.0.0.1:${local}/`);
  const fwd = await flor(forwardArgs(String(local)));
  if (fwd.code !== 0) throw new Error(`flor forward: ${fwd.stderr}`);
  const page = await (await fetch(`http://127.0.0.1:${local}/`)).text();
  if (!page.includes("Hello from the web service")) throw new Error(`forward: ${page}`);
  step(`smoke test: ${pacUrl}`);
  const pac = await (await fetch(pacUrl)).text();
  if (!pac.includes(`SOCKS5 127.0.0.1:${ports.socks}`)) throw new Error(`PAC file:\n${pac}`);
  step("smoke test passed");
}

/**
 * Installs the pilot the way an operator does: a release built with `deno task dist`, its
 * `florctl init`, adds and `check` on the operator's machine (the `ops` namespace),
 * `florctl enroll node` over SSH for every node (the release archive, `--init none` since
 * the namespaces have no systemd), `deploy`, then each user's `florctl enroll user` + `flor
 * join` + `flor run` from the release, and the LAN gateway from its bundle.
 */
import { join } from "node:path";
import { nodePaths, releaseArchiveName, releaseDirName } from "../../lib/platform.ts";
import { VERSION } from "../../lib/version.ts";
import {
  type AgentProcess,
  buildDist,
  randomBytes,
  REPO,
  type RunResult,
  runToEnd,
  serviceAddArgs,
  sha256Hex,
  startAgentProcess,
} from "../e2e/harness.ts";
import {
  GATEWAY,
  LAN_CLIENT,
  LAN_PORT,
  type ServiceSpec,
  SPARE_WEB_PORT,
  type UserSpec,
} from "./cluster_shape.ts";
import { NODE_METRICS, NODE_QUIC_PORT, type Topology } from "./topology.ts";

const TARGET = "linux-x64";
const DENO = Deno.execPath();
/** A blob the downloads fetch and check; 1 MiB crosses the WAN in well under a second. */
export const BLOB_BYTES = 1024 * 1024;

export interface Installed {
  dir: string;
  /** florctl from the operator's machine (`ops`), with the nodes' ssh config. */
  florctl(args: string[]): Promise<RunResult>;
  florctlOk(args: string[]): Promise<string>;
  /** Installed paths per node (pid file, log, binary). */
  paths: Record<string, ReturnType<typeof nodePaths>>;
  prefixes: Record<string, string>;
  users: Map<string, AgentProcess>;
  gateway?: AgentProcess;
  lanPassword: string;
  blobSha256: string;
  /** The unpacked release (flor, flor-gw launchers). */
  release: string;
  userEnv(name: string): Record<string, string>;
  /** Starts (again) a user's agent from the joined bundle. */
  startUser(u: UserSpec): Promise<AgentProcess>;
}

/** The unpacked release (`dir`: flor, florctl, flor-gw) and its archive (what enroll
 * installs). */
export interface Release {
  dir: string;
  archive: string;
}

export async function buildRelease(tmp: string, say: (s: string) => void): Promise<Release> {
  say(`building the release (deno task dist --target ${TARGET})`);
  const r = await buildDist(TARGET);
  if (r.code !== 0) throw new Error(`testbed: deno task dist failed:\n${r.stderr}`);
  // A copy of its own: another run (or a test) rebuilding dist/ must not change this one's.
  const archive = join(tmp, releaseArchiveName(VERSION, TARGET));
  await Deno.copyFile(join(REPO, "dist", releaseArchiveName(VERSION, TARGET)), archive);
  const t = await runToEnd("tar", ["-xzf", archive, "-C", tmp]);
  if (t.code !== 0) throw new Error(`testbed: cannot unpack ${archive}: ${t.stderr}`);
  return { dir: join(tmp, releaseDirName(VERSION, TARGET)), archive };
}

export async function install(
  topo: Topology,
  shape: { services: ServiceSpec[]; users: UserSpec[] },
  tmp: string,
  rel: Release,
  say: (s: string) => void,
): Promise<Installed> {
  const release = rel.dir;
  const dir = join(tmp, "cluster");
  const archive = rel.archive;
  const env = { FLORCTL_SSH_CONFIG: topo.sshConfig };
  // The operator's florctl is the release's too (and starts in a fraction of `deno run`).
  const florctl = (args: string[]) =>
    topo.tb.run("ops", [join(release, "florctl"), ...args, "--dir", dir], { env });
  const florctlOk = async (args: string[]) => {
    const r = await florctl(args);
    if (r.code !== 0) {
      throw new Error(
        `testbed: florctl ${args.join(" ")} exited ${r.code}:\n${r.stderr}${r.stdout}`,
      );
    }
    return r.stdout;
  };

  say("cluster.yaml: init, nodes, users, services, gateway, check");
  const lanPassword = await _writeClusterYaml(florctlOk, topo, shape);
  const lan = shape.services.find((s) => s.kind === "lan")!;
  const blob = randomBytes(BLOB_BYTES);
  const blobFile = join(tmp, "blob");
  await Deno.writeFile(blobFile, blob);
  const blobSha256 = await sha256Hex(blob);
  say("targets: HTTP and echo servers on every node, HTTP on the LAN host");
  await Promise.all([
    ...topo.nodes.map((n) =>
      startTargets(
        topo,
        n.ns,
        "127.0.0.1",
        blobFile,
        shape.services.filter((s) => s.node === n.name),
      )
    ),
    startTargets(topo, "lan", topo.lanAddr, blobFile, [{ ...lan, kind: "web", port: LAN_PORT }]),
  ]);

  const prefixes: Record<string, string> = {};
  const paths: Installed["paths"] = {};
  for (const n of topo.nodes) {
    prefixes[n.name] = join(tmp, `host-${n.name}`);
    paths[n.name] = nodePaths("linux", prefixes[n.name]);
    say(`${n.name}: florctl enroll node over SSH (release archive)`);
    await florctlOk([
      "enroll",
      "node",
      n.name,
      "--prefix",
      prefixes[n.name],
      "--init",
      "none",
      "--metrics",
      NODE_METRICS,
      "--binary",
      archive,
    ]);
  }
  say("florctl deploy (every node takes the final cluster map)");
  await florctlOk(["deploy"]);

  const userEnv = (name: string) => ({
    XDG_CONFIG_HOME: join(tmp, "users", name, ".config"),
    HOME: join(tmp, "users", name),
  });
  const startUser = (u: UserSpec) =>
    startAgentProcess({
      executable: join(release, "flor"),
      flags: ["--socks", `127.0.0.1:${u.socks}`, "--metrics", `127.0.0.1:${u.metrics}`],
      env: userEnv(u.name),
      wrap: ["ip", "netns", "exec", topo.tb.ns.u],
    });
  const users = new Map<string, AgentProcess>();
  const installed: Installed = {
    dir,
    florctl,
    florctlOk,
    paths,
    prefixes,
    users,
    lanPassword,
    blobSha256,
    release,
    userEnv,
    startUser,
  };
  say(`${shape.users.length} users: florctl enroll user, flor join, flor run`);
  for (const u of shape.users) {
    const file = join(tmp, `${u.name}.flor`);
    await florctlOk(["enroll", "user", u.name, "--out", file]);
    await Deno.mkdir(userEnv(u.name).XDG_CONFIG_HOME, { recursive: true });
    const j = await runToEnd(join(release, "flor"), ["join", file], { env: userEnv(u.name) });
    if (j.code !== 0) throw new Error(`testbed: flor join ${file} exited ${j.code}: ${j.stderr}`);
    users.set(u.name, await startUser(u));
  }

  say("gateway: florctl bundle gateway, flor-gw run on the LAN host");
  const gwDir = join(tmp, "gateway");
  await florctlOk(["bundle", "gateway", GATEWAY, "--out", gwDir]);
  installed.gateway = await startAgentProcess({
    executable: join(release, "flor-gw"),
    config: join(gwDir, "flor-gw.yaml"),
    flags: ["--metrics", "127.0.0.1:9470"],
    wrap: ["ip", "netns", "exec", topo.tb.ns.lan],
  });
  return installed;
}

/** The operator's adds, one florctl command each, then `check`; returns the LAN client's
 * password (printed once by `gateway client add`). */
async function _writeClusterYaml(
  florctlOk: (args: string[]) => Promise<string>,
  topo: Topology,
  shape: { services: ServiceSpec[]; users: UserSpec[] },
): Promise<string> {
  await florctlOk(["init", "acme"]);
  for (const n of topo.nodes) {
    await florctlOk([
      "node",
      "add",
      n.name,
      "--endpoint",
      `${n.addr}:${NODE_QUIC_PORT}`,
      "--ssh",
      n.name,
    ]);
  }
  for (const u of shape.users) await florctlOk(["user", "add", u.name, "--group", u.group]);
  await florctlOk([
    "gateway",
    "add",
    GATEWAY,
    "--listen",
    `${topo.lanAddr}:1080`,
    "--allow-cidr",
    topo.lanCidr,
  ]);
  for (const s of shape.services) {
    await florctlOk([
      ...serviceAddArgs(s.name, s.node, s.target, s.allow.join(",")),
    ]);
  }
  const lan = shape.services.find((s) => s.kind === "lan")!;
  const added = await florctlOk([
    "gateway",
    "client",
    "add",
    GATEWAY,
    LAN_CLIENT,
    "--services",
    lan.name,
  ]);
  const lanPassword = /password[^:]*:\s*(\S+)/i.exec(added)?.[1];
  if (!lanPassword) {
    throw new Error(`testbed: no password in 'gateway client add' output:\n${added}`);
  }
  await florctlOk(["check"]);
  return lanPassword;
}

async function startTargets(
  topo: Topology,
  ns: string,
  host: string,
  blobFile: string,
  services: Array<Pick<ServiceSpec, "kind" | "port">>,
): Promise<void> {
  const specs = services.filter((s) => s.kind === "web" || s.kind === "echo").map((s) =>
    `${s.kind === "web" ? "http" : "echo"}:${s.port}`
  );
  if (host === "127.0.0.1") specs.push(`http:${SPARE_WEB_PORT}`);
  const child = topo.tb.spawn(ns, [
    DENO,
    "run",
    "--allow-all",
    "--quiet",
    join(REPO, "tests/testbed/target_server.ts"),
    host,
    blobFile,
    ...specs,
  ]);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const first = await reader.read();
  if (!first.value?.includes("ready")) {
    throw new Error(
      `testbed: target server in ${ns} did not start: ${await new Response(child.stderr).text()}`,
    );
  }
  reader.releaseLock();
  // Keep draining so a chatty server never blocks on a full pipe.
  child.stdout.pipeTo(new WritableStream()).catch(() => {});
  child.stderr.pipeTo(new WritableStream()).catch(() => {});
}

/**
 * Real clients through the pilot, recorded per request: each user's curl (short requests
 * and 1 MiB downloads checked by sha256) and ssh sessions (ssh through a ProxyCommand
 * speaking SOCKS5 to the user's agent), a LAN device's curl through flor-gw with its
 * credentials, and the long-lived idle connections (idle_clients.ts). All of it runs in
 * the users' and LAN namespaces; this module only spawns the clients and writes down what
 * they saw.
 */
import { join } from "node:path";
import { REPO } from "../e2e/harness.ts";
import type { SshServer } from "../e2e/sshd.ts";
import { allowedFor, LAN_CLIENT, type ServiceSpec, type UserSpec } from "./cluster_shape.ts";
import type { RequestRecord } from "./model.ts";
import type { Topology } from "./topology.ts";

/** Each user waits this long (seconds, uniform) between requests: ~1 request/s per user,
 * which keeps 12 users' clients within one of the machine's two cores. */
const PAUSE_S: [number, number] = [0.6, 1.6];
/** Share of web requests that download the blob (the rest are short requests). */
const DOWNLOAD_SHARE = 0.2;
/** Share of an ops user's requests that are ssh sessions (each costs a handshake). */
const SSH_SHARE = 0.15;
/** Users' first requests are spread over this long (seconds). */
const START_SPREAD_S = 3;
/** curl's whole-request limit: a healthy 1 MiB download takes well under 2 s here. */
const CURL_MAX_S = 20;

export interface IdleEvent {
  ev: "open" | "closed" | "refused";
  user: string;
  service: string;
  t: number;
  why?: string;
}

export interface Traffic {
  records: RequestRecord[];
  idleEvents: IdleEvent[];
  /** Stops a user's own requests (a revoked user); their idle connections keep trying. */
  retire(user: string): void;
  /** One recorded request made on demand (a fault's probe). */
  probe(user: UserSpec, service: ServiceSpec): Promise<RequestRecord>;
  stop(): Promise<void>;
}

export interface TrafficOptions {
  topo: Topology;
  users: UserSpec[];
  services: ServiceSpec[];
  blobSha256: string;
  lanPassword: string;
  /** Each node's sshd (pinHostKeys done). */
  sshds: Map<string, SshServer>;
  /** Run time in seconds (0 = traffic start). */
  now(): number;
}

export function startTraffic(o: TrafficOptions): Traffic {
  const records: RequestRecord[] = [];
  const idleEvents: IdleEvent[] = [];
  const retired = new Set<string>();
  let stopping = false;
  const loops: Promise<void>[] = [];

  const { request, userRequest } = _requests(o);

  const kindFor = (s: ServiceSpec): RequestRecord["kind"] =>
    s.kind === "ssh"
      ? "ssh"
      : s.kind === "web" && Math.random() < DOWNLOAD_SHARE
      ? "download"
      : "short";

  for (const u of o.users) {
    const mine = allowedFor(u, o.services).filter((s) => s.kind !== "echo");
    const ssh = mine.filter((s) => s.kind === "ssh");
    const other = mine.filter((s) => s.kind !== "ssh");
    loops.push((async () => {
      // People do not all press enter in the same millisecond: spread the first requests.
      await sleep(Math.random() * START_SPREAD_S);
      while (!stopping && !retired.has(u.name)) {
        const pool = ssh.length > 0 && Math.random() < SSH_SHARE ? ssh : other;
        const s = pool[Math.floor(Math.random() * pool.length)];
        const rec = await userRequest(u, s, kindFor(s));
        if (!retired.has(u.name)) records.push(rec);
        await sleep(PAUSE_S[0] + Math.random() * (PAUSE_S[1] - PAUSE_S[0]));
      }
    })());
  }

  const lan = o.services.find((s) => s.kind === "lan");
  if (lan) {
    loops.push((async () => {
      while (!stopping) {
        records.push(
          await request(`lan:${LAN_CLIENT}`, lan, "lan", "lan", [
            "curl",
            "-sS",
            "-m",
            String(CURL_MAX_S),
            "--socks5-hostname",
            `${LAN_CLIENT}:${o.lanPassword}@${o.topo.lanAddr}:1080`,
            `http://${lan.name}.flor:${lan.port}/ping`,
          ], (out) => out === "pong\n" ? undefined : `unexpected body ${JSON.stringify(out)}`),
        );
        await sleep(PAUSE_S[0] + Math.random() * (PAUSE_S[1] - PAUSE_S[0]));
      }
    })());
  }

  const idle = _startIdle(o, idleEvents);

  return {
    records,
    idleEvents,
    retire: (user) => retired.add(user),
    probe: (u, s) => userRequest(u, s, s.kind === "ssh" ? "ssh" : "probe"),
    async stop() {
      stopping = true;
      await Promise.allSettled(loops);
      await idle.stop();
    },
  };
}

/** One request per call: spawns the client in its namespace and records what it saw. */
function _requests(o: TrafficOptions) {
  const request = async (
    principal: string,
    service: ServiceSpec,
    kind: RequestRecord["kind"],
    ns: string,
    argv: string[],
    check: (stdout: string) => string | undefined,
  ): Promise<RequestRecord> => {
    const start = o.now();
    const r = await o.topo.tb.run(ns, argv);
    const end = o.now();
    const bad = r.code !== 0
      ? `exit ${r.code}: ${r.stderr.trim().split("\n").at(-1)}`
      : check(r.stdout);
    const rec: RequestRecord = {
      start_s: round2(start),
      end_s: round2(end),
      principal,
      service: service.name,
      node: service.node,
      kind,
      ok: bad === undefined,
      latency_ms: Math.round((end - start) * 1000),
      ...(bad === undefined ? {} : { error: bad }),
    };
    return rec;
  };

  const userRequest = (u: UserSpec, s: ServiceSpec, kind: RequestRecord["kind"]) => {
    const socks = `127.0.0.1:${u.socks}`;
    if (kind === "ssh") {
      const sshd = o.sshds.get(s.node)!;
      return request(`user:${u.name}`, s, kind, "u", [
        "ssh",
        ...sshOptions(sshd, s.node, u.socks),
        "-p",
        String(s.port),
        `${s.name}.flor`,
        "--",
        "echo",
        "ssh-ok",
      ], (out) => out.trim() === "ssh-ok" ? undefined : `unexpected output ${out.trim()}`);
    }
    const url = `http://${s.name}.flor:${s.port}`;
    if (kind === "download") {
      return request(`user:${u.name}`, s, kind, "u", [
        "bash",
        "-o",
        "pipefail",
        "-c",
        `curl -sS -m ${CURL_MAX_S} --socks5-hostname ${socks} ${url}/blob | sha256sum`,
      ], (out) => out.startsWith(o.blobSha256) ? undefined : `sha256 ${out.slice(0, 16)}… differs`);
    }
    return request(`user:${u.name}`, s, kind, "u", [
      "curl",
      "-sS",
      "-m",
      String(CURL_MAX_S),
      "--socks5-hostname",
      socks,
      `${url}/ping`,
    ], (out) => out === "pong\n" ? undefined : `unexpected body ${JSON.stringify(out)}`);
  };

  return { request, userRequest };
}

/** idle_clients.ts in the users' namespace, its events collected into `events`. */
function _startIdle(o: TrafficOptions, events: IdleEvent[]): { stop(): Promise<void> } {
  const idleSpecs = o.users.flatMap((u) =>
    allowedFor(u, o.services).filter((s) => s.kind === "echo").map((s) => ({
      user: u.name,
      socks: u.socks,
      service: s.name,
      port: s.port,
    }))
  );
  const idle = o.topo.tb.spawn("u", [
    Deno.execPath(),
    "run",
    "--allow-net",
    "--quiet",
    "--config",
    join(REPO, "deno.json"),
    join(REPO, "tests/testbed/idle_clients.ts"),
    JSON.stringify(idleSpecs),
  ]);
  idle.stderr.pipeTo(new WritableStream()).catch(() => {});
  const idleDone = (async () => {
    let buf = "";
    for await (const chunk of idle.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          events.push(JSON.parse(line));
        } catch {
          // not ours (a Deno warning)
        }
      }
    }
  })().catch(() => {});

  return {
    async stop() {
      try {
        idle.kill("SIGTERM");
      } catch { /* exited */ }
      await idle.status;
      await idleDone;
    },
  };
}

/** ssh to a node's sshd through the user's agent: ncat speaks SOCKS5 and lets the agent
 * resolve `<service>.flor`; the host key is pinned (under an alias naming the node, in a
 * known_hosts file written by pinHostKeys). */
function sshOptions(sshd: SshServer, node: string, socks: number): string[] {
  const dir = sshd.dir;
  return [
    "-F",
    "/dev/null",
    "-o",
    `ProxyCommand=ncat --proxy 127.0.0.1:${socks} --proxy-type socks5 --proxy-dns remote %h %p`,
    "-o",
    "User=root",
    "-o",
    `IdentityFile=${dir}/id_ed25519`,
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    `UserKnownHostsFile=${dir}/${USERS_KNOWN_HOSTS}`,
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    `HostKeyAlias=flor-node-${node}`,
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=10",
    "-o",
    "LogLevel=ERROR",
  ];
}

const USERS_KNOWN_HOSTS = "users_known_hosts";

/** Pins each node's sshd host key for the users' ssh sessions (run before startTraffic). */
export async function pinHostKeys(sshds: Map<string, SshServer>): Promise<void> {
  for (const [node, sshd] of sshds) {
    const [type, key] = (await Deno.readTextFile(`${sshd.dir}/ssh_host_ed25519_key.pub`))
      .trim().split(/\s+/);
    await Deno.writeTextFile(
      `${sshd.dir}/${USERS_KNOWN_HOSTS}`,
      `flor-node-${node} ${type} ${key}\n`,
    );
  }
}

/** Idle connections as records: each open → closed span is one, ok unless it closed. */
export function idleRecords(
  events: IdleEvent[],
  services: ServiceSpec[],
  t0Ms: number,
  endS: number,
): RequestRecord[] {
  const nodeOf = new Map(services.map((s) => [s.name, s.node]));
  const openAt = new Map<string, number>();
  const out: RequestRecord[] = [];
  const rel = (t: number) => round2((t - t0Ms) / 1000);
  const rec = (e: IdleEvent, start: number, end: number, error?: string): RequestRecord => ({
    start_s: start,
    end_s: end,
    principal: `user:${e.user}`,
    service: e.service,
    node: nodeOf.get(e.service) ?? "?",
    kind: "idle",
    ok: error === undefined,
    latency_ms: Math.round((end - start) * 1000),
    ...(error === undefined ? {} : { error }),
  });
  for (const e of events) {
    const key = `${e.user}/${e.service}`;
    if (e.ev === "open") openAt.set(key, rel(e.t));
    else if (e.ev === "closed") {
      out.push(rec(e, openAt.get(key) ?? rel(e.t), rel(e.t), `idle connection ${e.why}`));
      openAt.delete(key);
    } else out.push(rec(e, rel(e.t), rel(e.t), `idle connection refused: ${e.why}`));
  }
  for (const [key, start] of openAt) {
    const [user, service] = key.split("/");
    out.push(rec({ ev: "open", user, service, t: 0 }, start, endS));
  }
  return out;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

function sleep(s: number) {
  return new Promise((r) => setTimeout(r, s * 1000));
}

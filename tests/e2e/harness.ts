/**
 * Real-process test harness: runs florctl and flor as the operator would (separate
 * processes, real UDP/TCP sockets on 127.0.0.1) and gives tests a SOCKS5 client, an echo
 * server and the agents' JSON events to assert on.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AGENT_V8_FLAGS_ARG } from "../../lib/memory.ts";
import { concat } from "../lib/bytes.ts";
import type { Testbed } from "./netns.ts";

export const REPO = fileURLToPath(new URL("../../", import.meta.url));
const DENO = Deno.execPath();
const DENO_FLAGS = ["run", "--allow-all", "--config", join(REPO, "deno.json")];
/** As every release build runs flor (lib/memory.ts). */
const FLOR_FLAGS = [...DENO_FLAGS, AGENT_V8_FLAGS_ARG];

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Only `env`, none of this process's environment (a release run with no Deno on PATH). */
  clearEnv?: boolean;
  /** Written to the command's stdin, then closed; without it the command gets no stdin. */
  stdin?: string;
}

/** Runs a command to completion, capturing both outputs as text. */
export async function runToEnd(
  cmd: string,
  args: string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: opts.env,
    clearEnv: opts.clearEnv,
    stdout: "piped",
    stderr: "piped",
    stdin: opts.stdin === undefined ? "null" : "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(opts.stdin));
    await writer.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A command that must succeed (setup, not what a test checks): its stdout, or an error naming
 * the command line, its exit code and its stderr. */
export async function runOk(cmd: string, args: string[], opts: RunOptions = {}): Promise<string> {
  const r = await runToEnd(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`\`${cmd} ${args.join(" ")}\` exited ${r.code}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}

export function florctl(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return runToEnd(DENO, [...DENO_FLAGS, join(REPO, "ctl/main.ts"), ...args], opts);
}

/** florctl that must succeed; the failure message carries its stderr. */
export async function florctlOk(args: string[], opts: RunOptions = {}): Promise<string> {
  const r = await florctl(args, opts);
  if (r.code !== 0) {
    throw new Error(`florctl ${args.join(" ")} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

export type Event = Record<string, unknown> & { message: string };

export interface AgentProcess {
  child: Deno.ChildProcess;
  events: Event[];
  /** Resolves with the first event (past or future) that matches. */
  waitFor(message: string, match?: (e: Event) => boolean, timeoutMs?: number): Promise<Event>;
  stop(signal?: Deno.Signal): Promise<void>;
  stderr(): string;
}

/** `florctl service add NAME --node NODE --target TARGET --allow ALLOW` as arguments, the way
 * most tests declare a service. */
export function serviceAddArgs(
  name: string,
  node: string,
  target: string,
  allow: string,
): string[] {
  return ["service", "add", name, "--node", node, "--target", target, "--allow", allow];
}

/** `flor run --config CONFIG FLAGS...`; with config undefined, `flor run FLAGS...` (the
 * joined bundle). */
export function startFlor(
  config: string | undefined,
  flags: string[] = [],
  env?: Record<string, string>,
): Promise<AgentProcess> {
  return startAgentProcess({ config, flags, env });
}

export interface AgentLaunch {
  /** flor (agent/main.ts) or flor-gw (gateway/main.ts). */
  program?: "flor" | "flor-gw";
  config?: string;
  flags?: string[];
  env?: Record<string, string>;
  /** A command to run it under, e.g. ["ip", "netns", "exec", "fl1-lan"]. */
  wrap?: string[];
  /** A release executable (an unpacked `flor` launcher) instead of this checkout's source. */
  executable?: string;
  /** Working directory (default: the test's). */
  cwd?: string;
  /** Called with each event as it arrives (the demo's live feed). */
  onEvent?: (e: Event) => void;
}

/** Starts flor or flor-gw and resolves once it logged `agent.started`. */
export async function startAgentProcess(l: AgentLaunch): Promise<AgentProcess> {
  const entry = l.program === "flor-gw" ? "gateway/main.ts" : "agent/main.ts";
  const argv = [
    ...(l.executable ? [l.executable] : [DENO, ...FLOR_FLAGS, join(REPO, entry)]),
    "run",
    ...(l.config ? ["--config", l.config] : []),
    ...(l.flags ?? []),
  ];
  const cmd = [...(l.wrap ?? []), ...argv];
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: l.cwd,
    env: l.env,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const events: Event[] = [];
  const waiters = new Set<() => void>();
  let stderr = "";
  let exited = false;
  const pump = async (s: ReadableStream<Uint8Array>, onLine: (l: string) => void) => {
    let buf = "";
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    }
    if (buf) onLine(buf);
  };
  const stdoutDone = pump(child.stdout, (line) => {
    try {
      events.push(JSON.parse(line));
    } catch {
      events.push({ message: "non-json", line });
    }
    l.onEvent?.(events[events.length - 1]);
    for (const w of waiters) w();
  });
  const stderrDone = pump(child.stderr, (line) => (stderr += line + "\n"));
  // stderr is drained first so an "exited" error carries the agent's last words.
  const status = Promise.all([child.status, stderrDone.catch(() => {})]).then(([s]) => {
    exited = true;
    for (const w of waiters) w();
    return s;
  });

  const agent: AgentProcess = {
    child,
    events,
    stderr: () => stderr,
    waitFor(message, match = () => true, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const e = events.find((e) => e.message === message && match(e));
          if (e) {
            done();
            resolve(e);
          } else if (exited) {
            done();
            reject(new Error(`flor exited before '${message}':\n${stderr}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(
            new Error(
              `no '${message}' event within ${timeoutMs} ms; events: ${
                events.map((e) => e.message).join(", ")
              }\n${stderr}`,
            ),
          );
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async stop(signal: Deno.Signal = "SIGTERM") {
      if (!exited) {
        try {
          child.kill(signal);
        } catch {
          // already gone
        }
      }
      await status;
      await Promise.all([stdoutDone, stderrDone]).catch(() => {});
    },
  };
  try {
    await agent.waitFor("agent.started", undefined, 20_000);
  } catch (e) {
    await agent.stop("SIGKILL");
    throw e;
  }
  return agent;
}

/** A port that was free a moment ago (the OS picks it; tests run agents on 127.0.0.1). */
export function freeTcpPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A UDP port for a node's QUIC endpoint that is also free over TCP: a node's bundle puts
 * its SOCKS listener on the same number (florctl bundle's default), and a port the kernel
 * hands out as free for UDP can be the local port of a live TCP connection (a CI run had
 * flor refuse to start with "address already in use" on that TCP bind). */
export function freeUdpPort(): number {
  for (;;) {
    const s = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
    const port = (s.addr as Deno.NetAddr).port;
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch {
      // taken over TCP: ask for another
    } finally {
      s.close();
    }
  }
}

/** TCP echo server; returns its port and a close function. */
export function startEcho(): { port: number; close(): void } {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const c of l) {
      echoConn(c).catch(() => {});
    }
  })().catch(() => {});
  return { port: (l.addr as Deno.NetAddr).port, close: () => l.close() };
}

/** Echoes until EOF, then half-closes: Deno's conn.readable would close the whole socket. */
async function echoConn(c: Deno.TcpConn) {
  const buf = new Uint8Array(256 * 1024);
  try {
    for (;;) {
      const n = await c.read(buf);
      if (n === null) break;
      for (let o = 0; o < n;) o += await c.write(buf.subarray(o, n));
    }
    await c.closeWrite();
  } finally {
    try {
      c.close(); // receive side is drained, so this is a FIN, not a reset
    } catch { /* closed already */ }
  }
}

export interface SocksResult {
  /** Method the server chose, RFC 1929 status (if used), and the CONNECT reply code. */
  method: number;
  authStatus?: number;
  reply?: number;
  conn: Deno.TcpConn;
}

/** A minimal SOCKS5 client (independent of lib/socks5.ts so it can catch its bugs). */
export async function socksConnect(
  port: number,
  host: string,
  destPort: number,
  creds?: { user: string; pass: string },
): Promise<SocksResult> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const write = async (b: number[]) => {
    const u = Uint8Array.from(b);
    for (let o = 0; o < u.length;) o += await conn.write(u.subarray(o));
  };
  const reader = new ExactReader(conn);
  await write(creds ? [5, 1, 2] : [5, 1, 0]);
  const [, method] = await reader.read(2);
  const res: SocksResult = { method, conn };
  if (method === 0xff) return res;
  if (method === 2 && creds) {
    const u = [...new TextEncoder().encode(creds.user)];
    const p = [...new TextEncoder().encode(creds.pass)];
    await write([1, u.length, ...u, p.length, ...p]);
    res.authStatus = (await reader.read(2))[1];
    if (res.authStatus !== 0) return res;
  }
  const h = [...new TextEncoder().encode(host)];
  await write([5, 1, 0, 3, h.length, ...h, destPort >> 8, destPort & 0xff]);
  try {
    const head = await reader.read(4);
    res.reply = head[1];
    if (head[3] === 1) await reader.read(6);
    else if (head[3] === 4) await reader.read(18);
    else if (head[3] === 3) await reader.read((await reader.read(1))[0] + 2);
  } catch {
    // closed without a (complete) reply
  }
  return res;
}

export class ExactReader {
  #buf = new Uint8Array(0);
  constructor(private conn: Deno.TcpConn) {}
  async read(n: number): Promise<Uint8Array> {
    while (this.#buf.length < n) {
      const chunk = new Uint8Array(65536);
      const got = await this.conn.read(chunk);
      if (got === null) throw new Error("connection closed");
      const b = new Uint8Array(this.#buf.length + got);
      b.set(this.#buf);
      b.set(chunk.subarray(0, got), this.#buf.length);
      this.#buf = b;
    }
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }
}

export async function sha256Hex(data: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(d), (x) => x.toString(16).padStart(2, "0")).join("");
}

export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) {
    crypto.getRandomValues(out.subarray(o, Math.min(n, o + 65536)));
  }
  return out;
}

export async function readToEnd(conn: Deno.TcpConn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  return concat(...chunks);
}

/** Sends `data` on conn (then half-closes) while reading everything back. */
export async function echoRoundTrip(conn: Deno.TcpConn, data: Uint8Array): Promise<Uint8Array> {
  const sending = (async () => {
    for (let o = 0; o < data.length;) o += await conn.write(data.subarray(o, o + 256 * 1024));
    await conn.closeWrite();
  })();
  const back = await readToEnd(conn);
  await sending;
  return back;
}

/** flor with any arguments (join, --version), run to completion. */
export function flor(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return runToEnd(DENO, [...FLOR_FLAGS, join(REPO, "agent/main.ts"), ...args], opts);
}

/** A `flor` executable for hosts in tests: a launcher that execs this checkout's agent with
 * the running Deno (so its pid is the agent's). */
export async function writeLauncher(path: string): Promise<string> {
  const script = `#!/bin/sh\nexec ${DENO} ${DENO_FLAGS.join(" ")} ${
    join(REPO, "agent/main.ts")
  } "$@"\n`;
  await Deno.writeTextFile(path, script, { mode: 0o755 });
  return path;
}

export function curl(args: string[]): Promise<RunResult> {
  return runToEnd("curl", args);
}

/** curl through a SOCKS5 agent on 127.0.0.1, as a user would. */
export function curlVia(socksPort: number, url: string): Promise<RunResult> {
  return curl(["-sS", "-m", "10", "--socks5-hostname", `127.0.0.1:${socksPort}`, url]);
}

/** As a user's program inside namespace `ns` would: CONNECT through the agent's SOCKS5 on
 * 127.0.0.1:1080 to echo.flor:9000, send the bytes of `file` and read them back. Returns what
 * came back (length, sha256) and the ms from CONNECT to the last byte. */
export async function echoFileInNamespace(
  tb: Pick<Testbed, "run">,
  ns: string,
  file: string,
): Promise<{ length: number; sha256: string; ms: number }> {
  const client = `
    import { echoRoundTrip, sha256Hex, socksConnect } from ${
    JSON.stringify(join(import.meta.dirname!, "harness.ts"))
  };
    const data = await Deno.readFile(${JSON.stringify(file)});
    const t0 = performance.now();
    const s = await socksConnect(1080, "echo.flor", 9000);
    if (s.reply !== 0) throw new Error("SOCKS reply " + s.reply);
    const back = await echoRoundTrip(s.conn, data);
    console.log(back.length, await sha256Hex(back), Math.round(performance.now() - t0));`;
  const r = await tb.run(ns, [DENO, "eval", "--config", join(REPO, "deno.json"), client]);
  if (r.code !== 0) {
    throw new Error(`echo client in namespace ${ns} exited ${r.code}:\n${r.stderr}`);
  }
  const [length, sha256, ms] = r.stdout.trim().split(" ");
  return { length: Number(length), sha256, ms: Number(ms) };
}

/** `deno task dist --target <target>`: the release archive in dist/, as CI builds it. */
export function buildDist(target: string): Promise<RunResult> {
  return runToEnd(DENO, ["task", "--config", join(REPO, "deno.json"), "dist", "--target", target]);
}

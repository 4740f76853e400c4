/**
 * Talking to the agent running on this machine, over its metrics address:
 * `flor status` (its own view — peers, tunnels, restarts, the last problems — from /status)
 * and `flor reload` (POST /control/reload with the token only its OS user can read; the way
 * to reload where there is no SIGHUP).
 */
import { formatHostPort, type HostPort, parseHostPort } from "../lib/host_port.ts";
import { type StatusBody, StatusSchema } from "../lib/request_bodies.ts";
import type { ForwardInfo } from "./forward_server.ts";

function localUrl(metricsAddr: string, path: string, what: string): string {
  if (metricsAddr === "off") {
    throw new Error(
      `metrics are off for this agent (listen.metrics: off): ${what} uses that address; ` +
        "set listen.metrics or pass --metrics ADDR",
    );
  }
  return `http://${formatHostPort(loopbackOf(parseHostPort(metricsAddr)))}${path}`;
}

/** An agent listening on every address is reached from this machine on loopback. */
export function loopbackOf(hp: HostPort): HostPort {
  const host = hp.host === "0.0.0.0" ? "127.0.0.1" : hp.host === "::" ? "::1" : hp.host;
  return { host, port: hp.port };
}

async function call(url: string, init?: RequestInit): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  } catch (e) {
    throw new Error(`no agent answers at ${url} (${(e as Error).message}): is it running?`);
  }
}

export async function fetchLocalStatus(metricsAddr: string): Promise<StatusBody> {
  const url = localUrl(metricsAddr, "/status", "flor status");
  const res = await call(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  const parsed = StatusSchema.safeParse(await res.json());
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(
      `${url} is not an agent's status document (${issue.path.join(".")}: ${issue.message}): ` +
        "is another program on the metrics address?",
    );
  }
  return parsed.data;
}

async function readToken(tokenFile: string): Promise<string> {
  try {
    return (await Deno.readTextFile(tokenFile)).trim();
  } catch (e) {
    throw new Error(
      `cannot read ${tokenFile} (${(e as Error).message}): run as the agent's user, or the ` +
        "agent is not running",
    );
  }
}

/** Asks the local agent to reload; the token file proves we are its OS user (or admin). */
export async function requestReload(metricsAddr: string, tokenFile: string): Promise<string> {
  const token = await readToken(tokenFile);
  const url = localUrl(metricsAddr, "/control/reload", "flor reload");
  const res = await call(url, { method: "POST", headers: { authorization: `Bearer ${token}` } });
  const text = (await res.text()).trim();
  if (!res.ok) throw new Error(text || `${url}: HTTP ${res.status}`);
  return text;
}

/** Adds (`{listen, service}`) or removes (`{listen}`) a forward in the running agent. */
export async function requestForward(
  metricsAddr: string,
  tokenFile: string,
  change: { listen: string; service?: string },
): Promise<ForwardInfo & { principal?: string }> {
  const token = await readToken(tokenFile);
  const url = localUrl(metricsAddr, "/control/forward", "flor forward");
  const res = await call(url, {
    method: change.service === undefined ? "DELETE" : "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(change),
  });
  if (!res.ok) throw new Error((await res.text()).trim() || `${url}: HTTP ${res.status}`);
  return await res.json();
}

/** Human-readable lines for a status object (pure). */
export function formatLocalStatus(s: StatusBody, now = Date.now()): string {
  const lines: string[] = [];
  const ago = (ms: number) => {
    const sec = Math.round((now - ms) / 1000);
    return sec < 120
      ? `${sec}s`
      : sec < 7200
      ? `${Math.round(sec / 60)}m`
      : `${Math.round(sec / 3600)}h`;
  };
  const ids = s.identities?.join(", ") ?? "?";
  lines.push(`agent     ${s.node ? `node:${s.node}` : ids} (identities: ${ids})`);
  lines.push(`version   ${s.version} (commit ${s.commit}), config ${s.config_hash}`);
  lines.push(
    `uptime    ${s.uptime_s}s, started ${s.starts} times, ${s.unclean_restarts} unclean` +
      (s.previous_exit === "unclean" ? " (the last exit was unclean)" : ""),
  );
  lines.push(
    `tunnels   ${s.tunnels_open} open, ${s.bytes_in} bytes in, ${s.bytes_out} bytes out` +
      (s.node
        ? `, ${s.connections} peers connected, ${s.auth_failures_last_hour} auth failures/h`
        : ""),
  );
  lines.push(
    `resources rss ${Math.round(Number(s.rss_bytes) / 1048576)} MiB, cpu ${
      Number(s.cpu_seconds).toFixed(1)
    }s, loop lag ${Math.round(Number(s.event_loop_lag_ms))} ms` +
      (s.open_fds !== undefined ? `, ${s.open_fds} fds` : ""),
  );
  if (s.udp_buffer_target_bytes !== undefined) {
    const mb = (v: unknown) => v === undefined ? "not set" : `${(Number(v) / 1e6).toFixed(1)} MB`;
    lines.push(
      `udp       receive buffer ${mb(s.udp_receive_buffer_bytes)} (target ${
        mb(s.udp_buffer_target_bytes)
      })` +
        (s.udp_receive_errors === undefined
          ? ""
          : `, host overflows ${s.udp_receive_errors} (${s.udp_receive_errors_last_min} in the last minute)`),
    );
  }
  const peers = s.peers ?? [];
  if (peers.length) {
    lines.push("peers");
    for (const p of peers) {
      const rtt = p.rttMs === undefined ? "" : `, rtt ${p.rttMs.toFixed(1)} ms`;
      const err = !p.up && p.lastError ? ` — ${p.lastError}` : "";
      lines.push(
        `  ${p.node.padEnd(12)} ${p.up ? "up  " : "DOWN"} for ${
          ago(p.since)
        } as ${p.identity}${rtt}${err}`,
      );
    }
  }
  const forwards = s.forwards ?? [];
  if (forwards.length) {
    lines.push("forwards");
    for (const f of forwards) {
      const from = f.origin === "config" ? "flor.yaml" : "flor forward, until the agent stops";
      lines.push(
        `  ${f.listen.padEnd(21)} → ${f.target} (${from}): ${f.open} open, ` +
          `${f.carried} carried, ${f.refused} refused`,
      );
    }
  }
  const problems = s.recent_problems ?? [];
  if (problems.length) {
    lines.push("recent problems");
    for (const p of problems.slice(-10)) {
      const { time, level, event, ...rest } = p;
      lines.push(`  ${time} ${level} ${event} ${JSON.stringify(rest)}`);
    }
  }
  return lines.join("\n");
}

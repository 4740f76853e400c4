/**
 * `flor status`: the local agent's own view — peers (up/down, RTT), tunnels, restarts and
 * the last problems — read from its /status endpoint on the metrics address.
 */
import { parseHostPort } from "../lib/cluster.ts";
import { formatHostPort } from "../lib/cluster.ts";

export async function fetchLocalStatus(metricsAddr: string): Promise<Record<string, unknown>> {
  if (metricsAddr === "off") {
    throw new Error(
      "metrics are off for this agent (listen.metrics: off): flor status reads them; " +
        "set listen.metrics or pass --metrics ADDR",
    );
  }
  const hp = parseHostPort(metricsAddr);
  const host = hp.host === "0.0.0.0" ? "127.0.0.1" : hp.host === "::" ? "::1" : hp.host;
  const url = `http://${formatHostPort({ host, port: hp.port })}/status`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(3000) });
  } catch (e) {
    throw new Error(`no agent answers at ${url} (${(e as Error).message}): is flor running?`);
  }
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return await res.json();
}

interface PeerView {
  node: string;
  identity: string;
  up: boolean;
  since: number;
  rttMs?: number;
  lastError?: string;
}

/** Human-readable lines for a status object (pure). */
export function formatLocalStatus(s: Record<string, unknown>, now = Date.now()): string {
  const lines: string[] = [];
  const ago = (ms: number) => {
    const sec = Math.round((now - ms) / 1000);
    return sec < 120
      ? `${sec}s`
      : sec < 7200
      ? `${Math.round(sec / 60)}m`
      : `${Math.round(sec / 3600)}h`;
  };
  const ids = (s.identities as string[] | undefined)?.join(", ") ?? "?";
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
  const peers = (s.peers as PeerView[] | undefined) ?? [];
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
  const problems = (s.recent_problems as Array<Record<string, unknown>> | undefined) ?? [];
  if (problems.length) {
    lines.push("recent problems");
    for (const p of problems.slice(-10)) {
      const { time, level, event, ...rest } = p;
      lines.push(`  ${time} ${level} ${event} ${JSON.stringify(rest)}`);
    }
  }
  return lines.join("\n");
}

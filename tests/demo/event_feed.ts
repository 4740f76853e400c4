/**
 * The demo's live feed: the agents' JSON events as one readable line each (who opened what,
 * what was refused and why, peers going up and down). Pure: an event in, a line or nothing out.
 */

export type AgentEvent = Record<string, unknown> & { message: string };

const bytes = (n: unknown) => {
  const v = Number(n ?? 0);
  return v < 1024
    ? `${v} B`
    : v < 1048576
    ? `${(v / 1024).toFixed(1)} KiB`
    : `${(v / 1048576).toFixed(1)} MiB`;
};

/** One line per event, or undefined for routine events a person watching need not see. */
export function feedLine(agent: string, e: AgentEvent): string | undefined {
  const what = describe(e);
  if (what === undefined) return undefined;
  const time = String(e["@timestamp"] ?? "").slice(11, 19);
  return `${time}  ${agent.padEnd(6)} ${what}`;
}

function describe(e: AgentEvent): string | undefined {
  const by = e.lan_client ? `${e.principal} (LAN client ${e.lan_client})` : `${e.principal}`;
  switch (e.message) {
    case "agent.started":
      return `started${e.socks && e.socks !== "off" ? `, SOCKS5 on ${e.socks}` : ""}${
        e.quic && e.quic !== "off" ? `, QUIC on ${e.quic}` : ""
      }`;
    case "tunnel.open":
      return e.side === "server"
        ? `tunnel opened    ${by} → ${e.service} (target ${e.target})`
        : `tunnel opened    ${by} → ${e.service} via node ${e.node}`;
    case "tunnel.close": {
      // The node counts toward and from its target, the client toward and from the mesh.
      const [out, back] = e.side === "server"
        ? [`${bytes(e.bytes_to_target)} to target`, `${bytes(e.bytes_from_target)} back`]
        : [`${bytes(e.bytes_out)} out`, `${bytes(e.bytes_in)} in`];
      return `tunnel closed    ${by} → ${e.service}: ${out}, ${back}, ${e.ms} ms${
        e.error ? ` (${e.error})` : ""
      }`;
    }
    case "socks.refused":
    case "forward.refused":
      return `REFUSED          ${by} → ${e.dest ?? e.service}: ${e.reason} — ${e.detail}`;
    case "access.denied":
      return `DENIED by policy ${by} → ${e.service ?? e.request} (${e.reason ?? "not allowed"})`;
    case "peer.up":
      return `peer up          ${e.node} as ${e.identity}`;
    case "peer.down":
      return `PEER DOWN        ${e.node}${e.error ? `: ${e.error}` : ""}`;
    case "peer.authenticated":
      return `peer joined      ${e.principal} from ${e.remote}`;
    case "auth.denied":
      return `AUTH DENIED      ${e.source ?? e.remote}: ${e.reason}`;
    case "forward.open":
      return `forward          ${e.listen} → ${e.target}`;
    case "map.updated":
      return `cluster map updated from ${e.from}`;
  }
  if (e.level === "WARN" || e.level === "ERROR" || e.level === "FATAL") {
    const { "@timestamp": _t, level, message, logger: _l, stack: _s, ...rest } = e;
    return `${String(level)} ${message} ${JSON.stringify(rest)}`;
  }
  return undefined;
}

/**
 * The `Udp:` counters of /proc/net/snmp (per network namespace on Linux): a header line of
 * names and a line of values, e.g. RcvbufErrors, the datagrams dropped because a socket's
 * receive buffer was full.
 */
export function parseUdpSnmp(text: string): Record<string, number> {
  const lines = text.split("\n").filter((l) => l.startsWith("Udp: "));
  if (lines.length < 2) return {};
  const names = lines[0].split(/\s+/).slice(1);
  const values = lines[1].split(/\s+/).slice(1);
  const out: Record<string, number> = {};
  names.forEach((n, i) => (out[n] = Number(values[i])));
  return out;
}

/**
 * A small Prometheus registry: counters and gauges with fixed label names, rendered in the
 * text exposition format (version 0.0.4). Labels are low-cardinality by construction:
 * callers pass service, peer node or reason names, never addresses or user input.
 */

export type Labels = Record<string, string>;

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge";
  labelNames: readonly string[];
  values: Map<string, { labels: Labels; value: number }>;
  /** Gauges read at scrape time (RSS, open tunnels). */
  collect?: () => Array<{ labels: Labels; value: number }>;
}

export class Registry {
  #families = new Map<string, Family>();

  counter(name: string, help: string, labelNames: readonly string[] = []) {
    const f = this.#family(name, help, "counter", labelNames);
    return {
      inc: (labels: Labels = {}, by = 1) => {
        if (by < 0) throw new RangeError(`counter ${name} cannot decrease`);
        add(f, labels, by);
      },
      get: (labels: Labels = {}) => f.values.get(key(f, labels))?.value ?? 0,
    };
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []) {
    const f = this.#family(name, help, "gauge", labelNames);
    return {
      set: (labels: Labels, v: number) => {
        f.values.set(key(f, labels), { labels: declared(f, labels), value: v });
      },
      add: (labels: Labels, by: number) => add(f, labels, by),
      get: (labels: Labels = {}) => f.values.get(key(f, labels))?.value ?? 0,
    };
  }

  /** A gauge computed on every scrape. */
  collected(
    name: string,
    help: string,
    collect: () => Array<{ labels: Labels; value: number }> | number,
  ) {
    const f = this.#family(name, help, "gauge", []);
    f.collect = () => {
      const v = collect();
      return typeof v === "number" ? [{ labels: {}, value: v }] : v;
    };
  }

  render(): string {
    const out: string[] = [];
    for (const f of this.#families.values()) {
      out.push(`# HELP ${f.name} ${f.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
      out.push(`# TYPE ${f.name} ${f.type}`);
      const samples = f.collect ? f.collect() : [...f.values.values()];
      if (samples.length === 0 && f.labelNames.length === 0) samples.push({ labels: {}, value: 0 });
      for (const s of samples) {
        out.push(`${f.name}${renderLabels(s.labels)} ${formatValue(s.value)}`);
      }
    }
    return out.join("\n") + "\n";
  }

  #family(name: string, help: string, type: Family["type"], labelNames: readonly string[]) {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name)) throw new RangeError(`bad metric name ${name}`);
    if (this.#families.has(name)) throw new RangeError(`metric ${name} registered twice`);
    const f: Family = { name, help, type, labelNames, values: new Map() };
    this.#families.set(name, f);
    return f;
  }
}

/** Runs for every update (several per tunnel): a loop, not map + join, so the key is the
 * only string it builds. */
function key(f: Family, labels: Labels): string {
  const names = f.labelNames;
  let k = names.length > 0 ? labels[names[0]] ?? "" : "";
  for (let i = 1; i < names.length; i++) k += "\u0000" + (labels[names[i]] ?? "");
  return k;
}

function add(f: Family, labels: Labels, by: number): void {
  const k = key(f, labels);
  const cur = f.values.get(k);
  if (cur) cur.value += by;
  else f.values.set(k, { labels: declared(f, labels), value: by });
}

/** Only the family's own label names are kept: an undeclared label would be printed but not
 * keyed, merging series that look different. */
function declared(f: Family, labels: Labels): Labels {
  for (const k of Object.keys(labels)) {
    if (!f.labelNames.includes(k)) throw new RangeError(`${f.name} has no label '${k}'`);
  }
  return Object.fromEntries(f.labelNames.map((n) => [n, labels[n] ?? ""]));
}

function renderLabels(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) =>
    `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`
  );
  return parts.length ? `{${parts.join(",")}}` : "";
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

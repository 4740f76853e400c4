/**
 * `deno task bench` options, parsed without I/O: which links (loopback and WAN profiles),
 * how much to send, how often to repeat. Sizes have one default per kind of link, because
 * 1 GiB over loopback takes seconds and over 100 Mbit/s minutes.
 */
import { parseArgs } from "node:util";
import type { LinkProfile } from "../wan/link_schedule.ts";

/** One environment the bench measures: loopback (one namespace) or a WAN profile. */
export interface LinkSpec {
  /** As printed: "loopback" or "40ms/100mbit/1%". */
  name: string;
  /** undefined: loopback. RTT is split evenly over the two directions. */
  profile?: LinkProfile;
}

export interface Sizes {
  /** One flow: bytes sent unless flowMaxSeconds comes first. */
  flowBytes: number;
  flowMaxSeconds: number;
  /** N connections each sending concurrentBytes, all at once. */
  concurrent: number;
  concurrentBytes: number;
  concurrentMaxSeconds: number;
  /** Sequential CONNECT → first echoed byte samples on a warm proxy. */
  latencyCount: number;
  /** Unmeasured CONNECTs before those samples (WARMUP_PARALLEL at a time), so they measure
   * the steady state of a proxy that has been running, not its first minutes. */
  warmupConnects: number;
}

/**
 * A fresh user agent's CONNECT → first byte fell from 2.0-2.5 ms over its first 200 CONNECTs
 * to 1.45-2.0 ms after 600-800 and stayed there up to 4,000 (tests/bench on loopback,
 * 2026-12-02, three fresh agents; V8 still tiering the code up): 1,000 is past that with
 * margin. Direct TCP and ssh -D settle within 200 and get the same warm-up.
 */
export const WARMUP_CONNECTS = 1_000;
/** Warm-up CONNECTs at once: one CONNECT and echo takes 85-300 ms on the default WAN links
 * (the bench's medians), so 1,000 one by one would take 1.5-5 minutes per path; 20 at a time
 * is 50 rounds, 4-15 s, and runs the same code as many times. The whole 40 ms/100 Mbit/s/1%
 * link with small sizes (--flow-mib 8 --concurrent 10) took 53 s for its three paths. */
export const WARMUP_PARALLEL = 20;

export type PathName = "direct" | "ssh" | "flor";
export const PATHS: readonly PathName[] = ["direct", "ssh", "flor"];

export interface BenchOptions {
  links: LinkSpec[];
  paths: PathName[];
  repeats: number;
  loopback: Sizes;
  wan: Sizes;
  json?: string;
  smoke: boolean;
  /** Earlier --json files to print together (ranges over their runs), measuring nothing. */
  merge: string[];
}

const MIB = 1024 * 1024;

/** The loopback measurements: 1 GiB flow, 200 × 1 MiB, 200 CONNECTs. */
export const LOOPBACK_SIZES: Sizes = {
  flowBytes: 1024 * MIB,
  flowMaxSeconds: 30,
  concurrent: 200,
  concurrentBytes: MIB,
  concurrentMaxSeconds: 60,
  latencyCount: 200,
  warmupConnects: WARMUP_CONNECTS,
};

/**
 * The WAN measurements: 50 × 1 MiB, and a flow long enough (~5 s at 100 Mbit/s)
 * for slow start to matter little; the caps keep a 0.4 MB/s path from taking minutes.
 */
export const WAN_SIZES: Sizes = {
  flowBytes: 64 * MIB,
  flowMaxSeconds: 20,
  concurrent: 50,
  concurrentBytes: MIB,
  concurrentMaxSeconds: 60,
  latencyCount: 50,
  warmupConnects: WARMUP_CONNECTS,
};

/** A few seconds per path: proves the bench runs, not how fast anything is. */
export const SMOKE_SIZES: Sizes = {
  flowBytes: 2 * MIB,
  flowMaxSeconds: 10,
  concurrent: 4,
  concurrentBytes: 256 * 1024,
  concurrentMaxSeconds: 20,
  latencyCount: 5,
  warmupConnects: 10,
};

export const DEFAULT_LINKS = [
  "loopback",
  "40ms/100mbit/0%",
  "40ms/100mbit/1%",
  "100ms/50mbit/0.5%",
];
export const SMOKE_LINKS = ["40ms/100mbit/1%"];

const _LINK = /^(\d+(?:\.\d+)?)ms\/(\d+(?:\.\d+)?)mbit\/(\d+(?:\.\d+)?)%$/;

/** "loopback" or "RTTms/RATEmbit/LOSS%" (e.g. "40ms/100mbit/1%"). */
export function parseLink(spec: string): LinkSpec {
  if (spec === "loopback") return { name: spec };
  const m = _LINK.exec(spec);
  if (!m) {
    throw new RangeError(
      `bench: link "${spec}" is neither "loopback" nor RTTms/RATEmbit/LOSS% ` +
        `(e.g. 40ms/100mbit/1%)`,
    );
  }
  const [rtt, rate, loss] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (loss > 100) throw new RangeError(`bench: link "${spec}": loss over 100%`);
  return { name: spec, profile: { delayMs: rtt / 2, rateMbit: rate, lossPct: loss } };
}

const _USAGE = `deno task bench [options]
  --links L,L,...      loopback and/or RTTms/RATEmbit/LOSS% (default ${DEFAULT_LINKS.join(",")})
  --paths P,P,...      direct, ssh, flor (default all)
  --repeats N          runs of every measurement (default 1)
  --flow-mib N         one flow's size (default 1024 loopback, 64 WAN)
  --concurrent N       connections of --concurrent-mib each at once (default 200 loopback, 50 WAN)
  --concurrent-mib N   (default 1)
  --latency N          CONNECT → first byte samples (default 200 loopback, 50 WAN)
  --warmup N           unmeasured CONNECTs before them (default ${WARMUP_CONNECTS}; 0: measure a
                       freshly started proxy's first CONNECTs)
  --json FILE          also write every number as JSON
  --smoke              tiny sizes, one WAN link: checks the bench runs (CI)
  --merge F,F,...      print earlier --json files as one table (ranges over runs), measure nothing`;

export function parseBenchArgs(args: string[]): BenchOptions {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      links: { type: "string" },
      paths: { type: "string" },
      repeats: { type: "string" },
      "flow-mib": { type: "string" },
      concurrent: { type: "string" },
      "concurrent-mib": { type: "string" },
      latency: { type: "string" },
      warmup: { type: "string" },
      json: { type: "string" },
      smoke: { type: "boolean", default: false },
      merge: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) throw new BenchUsage(_USAGE);
  const num = (name: string, v: string | undefined, min: number): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) {
      throw new RangeError(`bench: --${name} ${v} must be a number ≥ ${min}\n${_USAGE}`);
    }
    return n;
  };
  const smoke = values.smoke!;
  const links = (values.links?.split(",") ?? (smoke ? SMOKE_LINKS : DEFAULT_LINKS)).map(parseLink);
  const paths = (values.paths?.split(",") ?? [...PATHS]) as PathName[];
  for (const p of paths) {
    if (!PATHS.includes(p)) {
      throw new RangeError(`bench: unknown path "${p}" (${PATHS.join(", ")})`);
    }
  }
  const override = (base: Sizes): Sizes => ({
    ...base,
    flowBytes: (num("flow-mib", values["flow-mib"], 0.01) ?? base.flowBytes / MIB) * MIB,
    concurrent: num("concurrent", values.concurrent, 1) ?? base.concurrent,
    concurrentBytes: (num("concurrent-mib", values["concurrent-mib"], 0.001) ??
      base.concurrentBytes / MIB) * MIB,
    latencyCount: num("latency", values.latency, 1) ?? base.latencyCount,
    warmupConnects: num("warmup", values.warmup, 0) ?? base.warmupConnects,
  });
  return {
    links,
    paths,
    repeats: num("repeats", values.repeats, 1) ?? 1,
    loopback: override(smoke ? SMOKE_SIZES : LOOPBACK_SIZES),
    wan: override(smoke ? SMOKE_SIZES : WAN_SIZES),
    json: values.json,
    smoke,
    merge: values.merge?.split(",") ?? [],
  };
}

/** --help: the caller prints the message and exits 0. */
export class BenchUsage extends Error {}

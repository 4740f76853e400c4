/**
 * Congestion control for QUIC, by the names operators know. Deno 2.9.6 takes
 * `congestionControl: "low-latency"` for BBR and `"throughput"` for Cubic (its "default" is
 * Cubic too); flor.yaml says `transport.congestion: bbr | cubic`.
 */

export const CONGESTION_CONTROLLERS = ["bbr", "cubic"] as const;

export type Congestion = typeof CONGESTION_CONTROLLERS[number];

/** BBR: at 1% random loss on a 40 ms / 100 Mbit/s link Cubic fell to 0.4 MB/s and BBR kept
 * 8.4-8.6 MB/s (issue 10; docs/transport.md has this project's own table). */
export const DEFAULT_CONGESTION: Congestion = "bbr";

/** The value for Deno's QuicTransportOptions.congestionControl. */
export function congestionControlOption(c: Congestion): "low-latency" | "throughput" {
  return c === "bbr" ? "low-latency" : "throughput";
}

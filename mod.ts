/**
 * Florete's shared library, for programs that embed it. The executables are
 * agent/main.ts (flor), ctl/main.ts (florctl) and gateway/main.ts (flor-gw).
 */
export * from "./lib/identity.ts";
export * from "./lib/cluster.ts";
export * from "./lib/policy.ts";
export * from "./lib/socks5.ts";
export * from "./lib/tunnel_header.ts";
export * from "./lib/auth.ts";
export * from "./lib/pki.ts";
export { VERSION } from "./lib/version.ts";

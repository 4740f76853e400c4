/** Host names in configuration that mean "this machine only": localhost, 127/8, ::1. */
import { isLoopbackIp } from "./cidr.ts";

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || isLoopbackIp(h);
}

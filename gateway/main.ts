/**
 * flor-gw — the Florete LAN gateway: SOCKS5 on a LAN address for devices that cannot run
 * flor. Every client logs in (RFC 1929; passwords are kept as salted hashes), must come from
 * an allowed network, may use only its listed services, and its tunnels run as the gateway's
 * identity (`gateway:<name>`), which services name in their allow lists.
 *
 *   flor-gw run --config flor-gw.yaml [--socks ADDR] [--metrics ADDR|off]
 *
 * It is the agent (agent/) with a gateway configuration; this entry point only names it.
 */
import { main } from "../agent/main.ts";

if (import.meta.main) {
  await main(Deno.args, {
    name: "flor-gw",
    description: "Florete LAN gateway: SOCKS5 for LAN devices, tunnels as the gateway's identity",
  });
}

/** A real QUIC connection on 127.0.0.1 between two endpoints of this process, for tests of
 * what Deno's QUIC streams do. */
import { throwawayNodeIdentity } from "./node_identity.ts";

export async function quinnPair() {
  const id = await throwawayNodeIdentity("t");
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  const listener = endpoint.listen({ cert: id.certPem, key: id.keyPem, alpnProtocols: ["t"] });
  const accepted = listener.accept();
  const client = await Deno.connectQuic({
    hostname: "127.0.0.1",
    port: endpoint.addr.port,
    serverName: id.serverName,
    caCerts: [id.caPem],
    alpnProtocols: ["t"],
  });
  return { endpoint, client, server: await accepted };
}

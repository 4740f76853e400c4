/** A real QUIC connection on 127.0.0.1 between two endpoints of this process, for tests of
 * what Deno's QUIC streams do. */
import {
  certificatePem,
  createCa,
  exportPrivateKeyPem,
  generateKeyPair,
  issueCertificate,
} from "../../lib/pki.ts";
import { nodeServerName } from "../../lib/identity.ts";

export async function quinnPair() {
  const now = new Date();
  const ca = await createCa("t", now);
  const keys = await generateKeyPair();
  const cert = await issueCertificate({
    ca: ca.cert,
    caKey: ca.keys.privateKey,
    cluster: "t",
    principal: { kind: "node", name: "n1" },
    publicKey: keys.publicKey,
    now,
  });
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  const listener = endpoint.listen({
    cert: certificatePem(cert),
    key: await exportPrivateKeyPem(keys.privateKey),
    alpnProtocols: ["t"],
  });
  const accepted = listener.accept();
  const client = await Deno.connectQuic({
    hostname: "127.0.0.1",
    port: endpoint.addr.port,
    serverName: nodeServerName("t", "n1"),
    caCerts: [certificatePem(ca.cert)],
    alpnProtocols: ["t"],
  });
  return { endpoint, client, server: await accepted };
}

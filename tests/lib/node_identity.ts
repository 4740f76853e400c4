/**
 * A throwaway cluster CA and one node's certificate and key, as PEM text: for tests and
 * benches that run a QUIC server of their own (a bare listener, a floor relay) rather than a
 * cluster built with florctl (tests/e2e/fixture.ts). The certificate is for the node's server
 * name, so clients that check it the way agents do (lib/identity.ts nodeServerName) accept it.
 */
import { nodeServerName } from "../../lib/identity.ts";
import {
  certificatePem,
  createCa,
  exportPrivateKeyPem,
  generateKeyPair,
  issueCertificate,
} from "../../lib/pki.ts";

export interface NodeIdentity {
  /** The CA's certificate: a client's `caCerts`. */
  caPem: string;
  certPem: string;
  keyPem: string;
  /** What a client passes as `serverName`. */
  serverName: string;
}

export async function throwawayNodeIdentity(
  cluster: string,
  node = "n1",
  now = new Date(),
): Promise<NodeIdentity> {
  const ca = await createCa(cluster, now);
  const keys = await generateKeyPair();
  const cert = await issueCertificate({
    ca: ca.cert,
    caKey: ca.keys.privateKey,
    cluster,
    principal: { kind: "node", name: node },
    publicKey: keys.publicKey,
    now,
  });
  return {
    caPem: certificatePem(ca.cert),
    certPem: certificatePem(cert),
    keyPem: await exportPrivateKeyPem(keys.privateKey),
    serverName: nodeServerName(cluster, node),
  };
}

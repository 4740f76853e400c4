/**
 * florctl on the mesh: it authenticates to nodes as the operator (a user with `role: admin`)
 * and asks for their status — to verify enroll and deploy, and for `florctl status`.
 */
import { type Cluster, parseHostPort, revokedSerials } from "../lib/cluster.ts";
import { frame } from "../lib/binary.ts";
import { connectNode } from "../lib/quic_client.ts";
import { CloseCode } from "../lib/protocol.ts";
import { StreamBuffer } from "../lib/stream_buffer.ts";
import {
  decodeTunnelReply,
  encodeStatusRequest,
  MAX_TUNNEL_REPLY_BYTES,
  TunnelStatus,
} from "../lib/tunnel_header.ts";
import { importPrivateKeyPem } from "../lib/pki.ts";
import { type ClusterDir, CtlError } from "./cluster_dir.ts";
import { ensureCertificate, loadCa } from "./pki_store.ts";

export interface NodeStatus {
  node: string;
  version: string;
  commit: string;
  config_hash: string;
  started_at: string;
  uptime_s: number;
  pid: number;
  tunnels_open: number;
  connections: number;
  rss_bytes: number;
  time: string;
  [more: string]: unknown;
}

export interface Operator {
  name: string;
  query(node: string): Promise<NodeStatus>;
}

/** The admin user florctl acts as: `--as NAME`, or the only admin in cluster.yaml. */
export function operatorName(cluster: Cluster, as?: string): string {
  const admins = Object.entries(cluster.users).filter(([, u]) => u.role === "admin").map(([n]) =>
    n
  );
  if (as) {
    if (!admins.includes(as)) {
      throw new CtlError(`user ${as} is not an admin: give it \`role: admin\` in cluster.yaml`);
    }
    return as;
  }
  if (admins.length === 1) return admins[0];
  if (admins.length === 0) {
    throw new CtlError(
      "cluster.yaml has no operator: add `role: admin` to your user (florctl init creates one)",
    );
  }
  throw new CtlError(`several admins (${admins.join(", ")}): choose one with --as NAME`);
}

export async function operator(cd: ClusterDir, as?: string): Promise<Operator> {
  const name = operatorName(cd.cluster, as);
  const ca = await loadCa(cd.dir);
  const files = await ensureCertificate(cd.dir, ca, { kind: "user", name }, {
    cluster: cd.cluster.cluster,
    now: new Date(),
    revoked: revokedSerials(cd.cluster),
  });
  const key = await importPrivateKeyPem(files.keyPem);
  return {
    name,
    async query(node) {
      const entry = cd.cluster.nodes[node];
      if (!entry) throw new CtlError(`node ${node} is not in ${cd.file}`);
      const conn = await connectNode({
        cluster: cd.cluster.cluster,
        node,
        endpoint: parseHostPort(entry.endpoint),
        caPem: ca.certPem,
        cert: files.cert,
        key,
        as: `user:${name}`,
      });
      try {
        const stream = await conn.createBidirectionalStream();
        const w = stream.writable.getWriter();
        await w.write(frame(encodeStatusRequest()));
        await w.close();
        const buf = new StreamBuffer(stream.readable);
        const reply = decodeTunnelReply(await buf.readFrame(MAX_TUNNEL_REPLY_BYTES));
        if (reply.status !== TunnelStatus.OK) {
          throw new CtlError(`${node} refused the status request: ${reply.message}`);
        }
        return JSON.parse(new TextDecoder().decode(await buf.readFrame(0xffff))) as NodeStatus;
      } finally {
        conn.close({ closeCode: CloseCode.NORMAL, reason: "done" });
      }
    },
  };
}

/**
 * florctl on the mesh: it authenticates to nodes as the operator (a user with `role: admin`)
 * and asks for their status — to verify enroll and deploy, and for `florctl status`.
 */
import { principalString } from "../../lib/identity.ts";
import { type Cluster, entryOf, revokedSerials } from "../../lib/cluster.ts";
import { exchange } from "../../lib/exchange.ts";
import { connectNode } from "../../lib/quic_client.ts";
import { CloseCode } from "../../lib/protocol.ts";
import { type StatusBody, StatusSchema } from "../../lib/request_bodies.ts";
import { encodeStatusRequest, TunnelStatus } from "../../lib/tunnel_header.ts";
import { importPrivateKeyPem } from "../../lib/pki.ts";
import { type ClusterDir } from "./cluster_dir.ts";
import { CtlError } from "./ctl_error.ts";
import { ensureCertificate, loadCa, type PrincipalFiles } from "./pki_store.ts";

/** A node's status as florctl reads it (lib/request_bodies.ts): a node always names itself. */
export type NodeStatus = StatusBody & { node: string };

/** Upper bound on a status reply; callers pass a tighter signal of their own. */
export const STATUS_REPLY_TIMEOUT_MS = 10_000;

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

export interface OperatorIdentity {
  name: string;
  caPem: string;
  cert: PrincipalFiles["cert"];
  key: CryptoKey;
}

/** The admin's certificate and key (issued on first use, like any bundle's). */
export async function loadOperator(cd: ClusterDir, as?: string): Promise<OperatorIdentity> {
  const name = operatorName(cd.cluster, as);
  const ca = await loadCa(cd.dir);
  const files = await ensureCertificate(cd.dir, ca, { kind: "user", name }, {
    cluster: cd.cluster.cluster,
    now: new Date(),
    revoked: revokedSerials(cd.cluster),
  });
  return {
    name,
    caPem: ca.certPem,
    cert: files.cert,
    key: await importPrivateKeyPem(files.keyPem),
  };
}

export function dialNode(cd: ClusterDir, op: OperatorIdentity, node: string) {
  const entry = entryOf(cd.cluster.nodes, node);
  if (!entry) throw new CtlError(`node ${node} is not in ${cd.file}`);
  return connectNode({
    cluster: cd.cluster.cluster,
    node,
    endpoint: entry.endpoint,
    caPem: op.caPem,
    cert: op.cert,
    key: op.key,
    as: principalString({ kind: "user", name: op.name }),
  });
}

export interface TimedStatus {
  status: NodeStatus;
  /** Status request to the first reply byte on the established connection, ms. */
  rttMs: number;
  /** Local wall clock when the request was sent (for clock-skew estimates). */
  sentAtMs: number;
}

/** Asks a connected node for its status. A refusal throws CtlError; a malformed status an
 * ExchangeError naming the field. */
export async function requestStatus(
  conn: Deno.QuicConn,
  node: string,
  signal?: AbortSignal,
): Promise<TimedStatus> {
  const sentAtMs = Date.now();
  const t0 = performance.now();
  const stream = await conn.createBidirectionalStream();
  const { reply, body } = await exchange(stream, encodeStatusRequest(), {
    timeoutMs: STATUS_REPLY_TIMEOUT_MS,
    body: StatusSchema,
    signal,
    what: `status request to ${node}`,
  });
  if (reply.status !== TunnelStatus.OK || !body) {
    throw new CtlError(`${node} refused the status request: ${reply.message}`);
  }
  // The reply header and the status travel together (one flight): the RTT is to their arrival.
  const rttMs = Math.round((performance.now() - t0) * 10) / 10;
  return { status: { ...body, node: body.node ?? node }, rttMs, sentAtMs };
}

export async function operator(cd: ClusterDir, as?: string): Promise<Operator> {
  const op = await loadOperator(cd, as);
  return {
    name: op.name,
    async query(node) {
      const conn = await dialNode(cd, op, node);
      try {
        return (await requestStatus(conn, node)).status;
      } finally {
        conn.close({ closeCode: CloseCode.NORMAL, reason: "done" });
      }
    },
  };
}

/**
 * Asking every node for its status over the mesh, as the operator: one probe per node, in
 * parallel, each bounded by STATUS_TIMEOUT_MS, and why a node gave no answer as a code
 * (`florctl status` and `florctl doctor` read the same probes).
 */
import { formatHostPort } from "../../lib/host_port.ts";
import { CloseCode } from "../../lib/protocol.ts";
import { PeerError, type PeerErrorCode, raceSignal } from "../../lib/quic_client.ts";
import type { ClusterDir } from "./cluster_dir.ts";
import { CtlError } from "./ctl_error.ts";
import { dialNode, loadOperator, type NodeStatus, requestStatus } from "./operator.ts";

/** Per-node limit for handshake + auth + status reply. A healthy node answers in one RTT
 * after a 2.5 s-bounded handshake (CONNECT_TIMEOUT_MS); a row that waits longer only delays
 * the whole table, whose nodes are asked in parallel. */
export const STATUS_TIMEOUT_MS = 4_000;

/** Why a node gave no status: the dial's PeerError codes, plus the status request's own. */
export type ProbeErrorCode =
  | PeerErrorCode
  /** Handshake and auth done, but no status reply within STATUS_TIMEOUT_MS. */
  | "timeout"
  /** The node answered the status request with a refusal (e.g. its map has no such admin). */
  | "refused"
  /** Anything else (a malformed reply). */
  | "error";

/** What asking one node produced. */
export interface NodeProbe {
  node: string;
  endpoint: string;
  status?: NodeStatus;
  /** Status request to reply on the established connection (not the handshake), ms. */
  rttMs?: number;
  /** Local wall clock when the status request was sent (clock-skew estimate). */
  sentAtMs?: number;
  error?: { code: ProbeErrorCode; message: string };
}

/** Asks every node in cluster.yaml for its status in parallel, as the operator. Throws
 * CtlError when there is no usable operator identity (no admin, bad --as, no CA). */
export async function probeNodes(
  cd: ClusterDir,
  as?: string,
  timeoutMs = STATUS_TIMEOUT_MS,
): Promise<NodeProbe[]> {
  const op = await loadOperator(cd, as);
  return await Promise.all(
    Object.entries(cd.cluster.nodes).map(([node, entry]) =>
      _probe(node, formatHostPort(entry.endpoint), timeoutMs, () => dialNode(cd, op, node))
    ),
  );
}

async function _probe(
  node: string,
  endpoint: string,
  timeoutMs: number,
  dial: () => Promise<Deno.QuicConn>,
): Promise<NodeProbe> {
  const signal = AbortSignal.timeout(timeoutMs);
  const close = (c: Deno.QuicConn) => {
    try {
      c.close({ closeCode: CloseCode.NORMAL, reason: "done" });
    } catch {
      // closed already
    }
  };
  let conn: Deno.QuicConn | undefined;
  try {
    conn = await raceSignal(dial(), signal, close);
    const { status, rttMs, sentAtMs } = await requestStatus(conn, node, signal);
    return { node, endpoint, status, rttMs, sentAtMs };
  } catch (e) {
    if (e instanceof PeerError) {
      return { node, endpoint, error: { code: e.code, message: e.message } };
    }
    if (e instanceof CtlError) {
      return { node, endpoint, error: { code: "refused", message: e.message } };
    }
    if (signal.aborted) {
      return {
        node,
        endpoint,
        error: {
          code: "timeout",
          message: `${node} (${endpoint}) accepted the connection but sent no status within ` +
            `${timeoutMs / 1000} s`,
        },
      };
    }
    return {
      node,
      endpoint,
      error: { code: "error", message: `${node}: ${(e as Error).message}` },
    };
  } finally {
    if (conn) close(conn);
  }
}

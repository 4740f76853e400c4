/**
 * The local control endpoint: POST /control/reload (reload without signals: Windows has no
 * SIGHUP) and POST/DELETE /control/forward (`flor forward` on the running agent). Only a
 * caller that can read the token file in the agent's state directory — the same OS user, or
 * an administrator — can use it; `flor reload` and `flor forward` do that.
 */
import { constantTimeEqual } from "../lib/binary.ts";
import { ForwardError, type ForwardErrorCode, type ForwardInfo } from "./forward_server.ts";
import { ForwardSpecError } from "./forward_spec.ts";

export interface ControlSource {
  /** The secret in the state directory that only the agent's OS user can read. */
  controlToken: string;
  /** Re-reads the configuration; the error if the old one keeps serving. */
  reload(): Promise<Error | undefined>;
  /** Local port forwards added and removed at run time; undefined if this agent has none. */
  forwards(): ForwardControl | undefined;
}

export interface ForwardControl {
  /** Throws ForwardSpecError (bad arguments) or ForwardError (refused). */
  add(listen: string, target: string): ForwardInfo & { principal: string };
  remove(listen: string): ForwardInfo;
}

/** Largest /control/forward body: a request is about 60 bytes of JSON (two short strings); 4 KiB
 * leaves room for long names and stops a local client from streaming an endless body. */
export const MAX_CONTROL_BODY_BYTES = 4096;

const FORWARD_STATUS: Record<ForwardErrorCode, number> = {
  no_identity: 409,
  unknown_service: 404,
  not_allowed: 403,
  wrong_port: 403,
  in_use: 409,
  not_found: 404,
};

/** The handler for /control/* paths (local_http.ts routes them here); undefined for others. */
export function controlEndpoint(source: ControlSource) {
  const reload = reloadHandler(source);
  const forward = forwardHandler(source);
  return function control(req: Request, path: string): Promise<Response> | undefined {
    if (path === "/control/reload") return reload(req);
    if (path === "/control/forward") return forward(req);
    return undefined;
  };
}

function reloadHandler(source: ControlSource) {
  return async function reload(req: Request): Promise<Response> {
    if (req.method !== "POST") return new Response("use POST\n", { status: 405 });
    if (!hasToken(req, source)) return wrongToken();
    const err = await source.reload();
    return err
      ? new Response(`reload failed, the old configuration keeps serving: ${err.message}\n`, {
        status: 409,
      })
      : new Response("reloaded\n");
  };
}

/** `flor forward`: POST {listen, service} adds a forward, DELETE {listen} removes one; the
 * same control token as reload, since a forward lends the agent's identity. */
function forwardHandler(source: ControlSource) {
  return async function forward(req: Request): Promise<Response> {
    if (req.method !== "POST" && req.method !== "DELETE") {
      return new Response("use POST or DELETE\n", { status: 405 });
    }
    if (!hasToken(req, source)) return wrongToken();
    const forwards = source.forwards();
    if (!forwards) return new Response("this agent does not forward\n", { status: 409 });
    let body: { listen?: unknown; service?: unknown };
    try {
      body = JSON.parse(await boundedText(req, MAX_CONTROL_BODY_BYTES));
    } catch (e) {
      return new Response(`bad request: ${(e as Error).message}\n`, { status: 400 });
    }
    try {
      const info = req.method === "POST"
        ? forwards.add(String(body.listen ?? ""), String(body.service ?? ""))
        : forwards.remove(String(body.listen ?? ""));
      return Response.json(info);
    } catch (e) {
      if (e instanceof ForwardError) {
        return new Response(e.message + "\n", { status: FORWARD_STATUS[e.code] });
      }
      if (e instanceof ForwardSpecError) return new Response(e.message + "\n", { status: 400 });
      throw e;
    }
  };
}

function hasToken(req: Request, source: ControlSource): boolean {
  return constantTimeEqual(req.headers.get("authorization") ?? "", `Bearer ${source.controlToken}`);
}

function wrongToken(): Response {
  return new Response("forbidden: wrong control token\n", { status: 403 });
}

async function boundedText(req: Request, max: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of req.body ?? new ReadableStream<Uint8Array>()) {
    total += chunk.length;
    if (total > max) throw new RangeError(`body over ${max} bytes`);
    chunks.push(chunk);
  }
  const all = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  return new TextDecoder().decode(all);
}

/**
 * The agent's local HTTP endpoint: /metrics (Prometheus), /healthz (the process answers),
 * /readyz (serving the configuration the operator deployed), /status (the status document,
 * status_document.ts), the browsers' PAC file (pac.ts) and /control/* (control_endpoint.ts).
 * Meant for localhost: it exposes no secrets but does reveal service names and traffic
 * volumes; the Host check (http_host.ts) keeps web pages from reading it by DNS rebinding.
 */
import type { StatusDocument } from "../lib/request_bodies.ts";
import type { AgentMetrics } from "./agent_metrics.ts";
import { controlEndpoint, type ControlSource } from "./control_endpoint.ts";
import { checkHost } from "./http_host.ts";
import { PAC_CONTENT_TYPE, PAC_PATH } from "./pac.ts";

export interface LocalHttpSource extends ControlSource {
  /** Started, and the last reload (if any) succeeded. */
  ready(): boolean;
  /** The agent's own view for `flor status`. */
  status(): StatusDocument;
  /** The PAC file for browsers, or why this agent serves none. */
  pac(): { text: string } | { missing: string };
}

export function serveLocalHttp(
  addr: { host: string; port: number },
  metrics: AgentMetrics,
  source: LocalHttpSource,
  /** Names besides the listening address and localhost that requests may use as Host. */
  allowedHosts: readonly string[] = [],
): Deno.HttpServer<Deno.NetAddr> {
  const control = controlEndpoint(source);
  const hosts = { listenHost: addr.host, allowedHosts };
  return Deno.serve(
    { hostname: addr.host, port: addr.port, onListen: () => {} },
    function localHttp(req) {
      // First, for every route: DNS rebinding (agent/http_host.ts).
      const host = checkHost(req.headers.get("host"), hosts);
      if (!host.ok) return new Response(host.message, { status: host.status });
      const path = new URL(req.url).pathname;
      if (path === "/metrics") {
        return new Response(metrics.registry.render(), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      }
      if (path === "/healthz") return new Response("ok\n");
      if (path === "/readyz") {
        return source.ready()
          ? new Response("ready\n")
          : new Response("not ready\n", { status: 503 });
      }
      if (path === "/status") {
        return new Response(JSON.stringify(source.status(), null, 1) + "\n", {
          headers: { "content-type": "application/json" },
        });
      }
      if (path === PAC_PATH) return pacResponse(source);
      return control(req, path) ??
        new Response(`not found: try /metrics, /healthz, /readyz, /status, ${PAC_PATH}\n`, {
          status: 404,
        });
    },
  );
}

function pacResponse(source: LocalHttpSource): Response {
  const pac = source.pac();
  if ("missing" in pac) return new Response(`no PAC file: ${pac.missing}\n`, { status: 404 });
  return new Response(pac.text, {
    headers: { "content-type": PAC_CONTENT_TYPE, "cache-control": "no-cache" },
  });
}

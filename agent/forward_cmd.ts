/**
 * `flor forward [BIND:]PORT SERVICE[.flor][:PORT]`: a local port forward in the running agent
 * (through its local control endpoint, with the token only its OS user can read) or, with
 * --foreground, in this process until Ctrl-C. `--remove [BIND:]PORT` takes one away.
 *
 * A forward added to the running agent lasts until that agent stops: it is not written into
 * flor.yaml, which comes from the operator's bundle and stays as the operator made it unless
 * its user edits it. The lines that keep it are printed instead (and `flor join` of a renewed
 * bundle keeps a user's `forwards:`).
 */
import { join } from "node:path";
import { ConfigError } from "../lib/config_problems.ts";
import { setupLogging } from "../lib/log.ts";
import { CONTROL_TOKEN_FILE, startAgent, stateDirOf } from "./agent.ts";
import { loadAgentConfig, type LoadedAgentConfig } from "./config.ts";
import { forwardKey, forwardYaml, parseForward, parseForwardListen } from "./forward_spec.ts";
import { requestForward } from "./local_client.ts";

export interface ForwardOptions {
  config?: string;
  foreground?: boolean;
  remove?: boolean;
  metrics?: string;
  state?: string;
}

const USAGE = "usage: flor forward [BIND:]PORT SERVICE[.flor][:PORT] [--foreground], " +
  "or flor forward --remove [BIND:]PORT";

export async function forwardCmd(
  listen: string | undefined,
  service: string | undefined,
  o: ForwardOptions,
  joinedConfig: () => Promise<string>,
) {
  try {
    if (!listen || (!o.remove && !service) || (o.remove && (service || o.foreground))) {
      throw new Error(USAGE);
    }
    const loaded = await loadAgentConfig(o.config ?? await joinedConfig());
    if (o.foreground) return await foreground(loaded, listen, service!);
    const token = join(stateDirOf(loaded, o.state), CONTROL_TOKEN_FILE);
    const metrics = o.metrics ?? loaded.config.listen.metrics;
    if (o.remove) {
      const key = forwardKey(parseForwardListen(listen));
      const gone = await reach(() => requestForward(metrics, token, { listen: key }));
      console.log(`removed the forward ${gone.listen} → ${gone.target}`);
      return;
    }
    const f = await reach(() => requestForward(metrics, token, { listen, service: service! }));
    console.log(
      `forwarding ${f.listen} → ${f.target} as ${f.principal}, until the agent stops.\n` +
        `To keep it across restarts, add to ${loaded.file}:\n\n${
          forwardYaml({ ...parseForward({ cluster: loaded.config.cluster }, f.listen, f.target) })
        }`,
    );
  } catch (e) {
    console.error(
      e instanceof ConfigError ? e.message : `flor forward: ${(e as Error).message}`,
    );
    Deno.exit(1);
  }
}

/** Calls the running agent; when none answers, says how to run the forward without one. */
async function reach<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    const m = (e as Error).message;
    if (m.startsWith("no agent answers") || m.startsWith("cannot read")) {
      throw new Error(`${m}\n  (or run the forward on its own: flor forward --foreground ...)`);
    }
    throw e;
  }
}

/** The forward in this process: the agent's identity and map, no SOCKS5, no HTTP, a state
 * directory of its own (the running agent keeps its own), until SIGINT/SIGTERM. */
async function foreground(loaded: LoadedAgentConfig, listen: string, service: string) {
  const cfg = loaded.config;
  if (!cfg.socks.default_identity || cfg.node || cfg.gateway) {
    throw new Error(
      `${loaded.file} has no socks.default_identity to lend: forwards run on a user's agent`,
    );
  }
  const spec = parseForward({ cluster: cfg.cluster }, listen, service);
  setupLogging(cfg.log.level);
  const state = await Deno.makeTempDir({ prefix: "flor-forward-" });
  const agent = await startAgent(loaded, { socks: "off", metrics: "off", state, forwards: [] });
  const stop = async (code: number) => {
    await agent.close();
    await Deno.remove(state, { recursive: true }).catch(() => {});
    Deno.exit(code);
  };
  try {
    const f = agent.forwards!.add(spec, "runtime");
    console.error(
      `forwarding ${f.listen} → ${f.target} as ${cfg.socks.default_identity}; Ctrl-C to stop`,
    );
  } catch (e) {
    console.error(`flor forward: ${(e as Error).message}`);
    await stop(1);
  }
  Deno.addSignalListener("SIGINT", () => void stop(0));
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", () => void stop(0));
}

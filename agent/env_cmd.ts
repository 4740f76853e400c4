/**
 * `flor env [--shell sh|fish|powershell]`: prints the lines that point a shell's tools at this
 * agent's SOCKS5 port and the PAC URL for browsers (agent/shell_env.ts), from its flor.yaml.
 */
import { formatHostPort, parseHostPort } from "../lib/host_port.ts";
import { currentTarget } from "../lib/platform.ts";
import { loadAgentConfig } from "./config.ts";
import { loopbackOf } from "./local_client.ts";
import { PAC_PATH } from "./pac.ts";
import { defaultShell, type Shell, shellEnv, SHELLS } from "./shell_env.ts";

export interface EnvOptions {
  config?: string;
  shell?: string;
}

export async function envCmd(o: EnvOptions, joinedConfig: () => Promise<string>) {
  try {
    if (o.shell !== undefined && !(SHELLS as readonly string[]).includes(o.shell)) {
      throw new Error(`--shell ${o.shell}: choose one of ${SHELLS.join(", ")}`);
    }
    const loaded = await loadAgentConfig(o.config ?? await joinedConfig());
    const cfg = loaded.config;
    const principal = cfg.socks.default_identity;
    if (cfg.listen.socks === "off" || !principal || cfg.gateway) {
      throw new Error(
        `${loaded.file}: this agent has no SOCKS5 port that works without a login ` +
          "(listen.socks and socks.default_identity): flor env is for a user's agent",
      );
    }
    const metrics = cfg.listen.metrics;
    const pacUrl = metrics === "off"
      ? undefined
      : `http://${formatHostPort(loopbackOf(parseHostPort(metrics)))}${PAC_PATH}`;
    const shell = (o.shell as Shell | undefined) ??
      defaultShell(currentTarget().os, Deno.env.toObject());
    const text = shellEnv({
      shell,
      socks: loopbackOf(parseHostPort(cfg.listen.socks)),
      pacUrl,
      principal,
      cluster: cfg.cluster,
    });
    await Deno.stdout.write(new TextEncoder().encode(text));
  } catch (e) {
    console.error(`flor env: ${(e as Error).message}`);
    Deno.exit(1);
  }
}

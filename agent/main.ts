/**
 * flor — the Florete agent.
 *
 *   flor run --config flor.yaml [--listen ADDR] [--socks ADDR|off] [--metrics ADDR|off]
 *   flor join FILE [--no-service] | flor leave [--yes]
 *   flor forward [BIND:]PORT SERVICE[.flor][:PORT] [--foreground] | flor forward --remove ADDR
 *   flor env [--shell sh|fish|powershell]
 *   flor --version
 */
import { Command } from "commander";
import { ConfigError } from "../lib/config_problems.ts";
import { eventLog, setupLogging } from "../lib/log.ts";
import { versionLine } from "../lib/version.ts";
import { join } from "node:path";
import { startAgent } from "./agent.ts";
import { startMemorySampler } from "./memory_sampler.ts";
import { startMallocTrim } from "../lib/malloc.ts";
import { loadAgentConfig } from "./config.ts";
import { joinBundle, joinedConfigFile, joinedInstall, leaveBundle } from "./join.ts";
import { installUserService } from "./user_service.ts";
import { fetchLocalStatus, formatLocalStatus, requestReload } from "./local_client.ts";
import { CONTROL_TOKEN_FILE, stateDirOf } from "./agent.ts";
import { forwardCmd, type ForwardOptions } from "./forward_cmd.ts";
import { envCmd, type EnvOptions } from "./env_cmd.ts";

interface RunOptions {
  config?: string;
  listen?: string;
  socks?: string;
  metrics?: string;
  state?: string;
}

/** flor and flor-gw share this CLI; each refuses the other's configuration. */
export interface Program {
  name: "flor" | "flor-gw";
  description: string;
}

let program: Program = {
  name: "flor",
  description: "Florete agent: SOCKS5 in, mutually authenticated QUIC tunnels, TCP out",
};

async function run(opts: RunOptions) {
  let loaded;
  try {
    loaded = await loadAgentConfig(opts.config ?? await joinedConfig());
    const isGateway = loaded.config.gateway !== undefined;
    if (isGateway !== (program.name === "flor-gw")) {
      throw new Error(
        isGateway
          ? `${loaded.file} is a gateway configuration: run it with flor-gw`
          : `${loaded.file} is not a gateway configuration (no gateway: section): run it with flor`,
      );
    }
  } catch (e) {
    console.error(e instanceof ConfigError ? e.message : `flor: ${(e as Error).message}`);
    Deno.exit(2);
  }
  setupLogging(loaded.config.log.level);
  installCrashHandlers();
  startMemorySampler();
  // Gives back what a burst freed (lib/malloc_trim.ts): every way flor and flor-gw start
  // comes through here.
  startMallocTrim();
  let agent;
  try {
    agent = await startAgent(loaded, {
      quic: opts.listen,
      socks: opts.socks,
      metrics: opts.metrics,
      state: opts.state,
    });
  } catch (e) {
    console.error(`flor: cannot start: ${(e as Error).message}`);
    Deno.exit(1);
  }
  const stop = async () => {
    await agent.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGHUP", () => void agent.reload());
}

/** An uncaught error is logged with its stack before the process exits, so the operator
 * sees why; the run marker stays behind and the next start reports an unclean restart. */
function installCrashHandlers() {
  const log = eventLog("agent");
  const crash = (error: unknown) => {
    const e = error as Error;
    log.error("agent.crash", { error: String(e?.message ?? e), stack: e?.stack });
    Deno.exit(70);
  };
  globalThis.addEventListener("unhandledrejection", (ev) => {
    ev.preventDefault();
    crash(ev.reason);
  });
  globalThis.addEventListener("error", (ev) => {
    ev.preventDefault();
    crash(ev.error);
  });
}

/** Without --config, the bundle installed by `flor join`. */
async function joinedConfig(): Promise<string> {
  const file = joinedConfigFile();
  try {
    await Deno.stat(file);
  } catch {
    throw new Error(
      `no --config given and no joined bundle at ${file}: run \`flor join FILE\` ` +
        `with the file your operator gave you, or pass --config flor.yaml`,
    );
  }
  return file;
}

async function status(opts: { config?: string; metrics?: string; json?: boolean }) {
  try {
    const addr = opts.metrics ??
      (await loadAgentConfig(opts.config ?? await joinedConfig())).config.listen.metrics;
    const s = await fetchLocalStatus(addr);
    console.log(opts.json ? JSON.stringify(s, null, 2) : formatLocalStatus(s));
  } catch (e) {
    console.error(`flor status: ${(e as Error).message}`);
    Deno.exit(1);
  }
}

async function reload(opts: { config?: string; metrics?: string; state?: string }) {
  try {
    const loaded = await loadAgentConfig(opts.config ?? await joinedConfig());
    const token = join(stateDirOf(loaded, opts.state), CONTROL_TOKEN_FILE);
    console.log(await requestReload(opts.metrics ?? loaded.config.listen.metrics, token));
  } catch (e) {
    console.error(`${program.name} reload: ${(e as Error).message}`);
    Deno.exit(1);
  }
}

async function joinCmd(file: string, opts: { force?: boolean; service: boolean }) {
  try {
    const dir = await joinBundle(file, opts);
    if (!opts.service) {
      console.log(`joined: bundle installed in ${dir}; start the agent with \`flor run\``);
      return;
    }
    console.log(`joined: bundle installed in ${dir}`);
    let said;
    try {
      said = (await installUserService(join(dir, "flor.yaml"))).say;
    } catch (e) {
      said = [
        `autostart: not installed: ${(e as Error).message}`,
        "start the agent with: flor run",
      ];
    }
    for (const line of said) console.log(line);
  } catch (e) {
    console.error(`flor: ${(e as Error).message}`);
    Deno.exit(1);
  }
}

async function leaveCmd(opts: { yes?: boolean }) {
  try {
    const found = await joinedInstall();
    if (!found.bundle && !found.service) {
      console.log(`nothing to remove: no bundle in ${found.dir} and no autostart`);
      return;
    }
    const what = `the bundle${found.principal ? ` of ${found.principal}` : ""} in ${found.dir} ` +
      "(keys and state included)" +
      (found.service ? ` and the autostart ${found.service}` : "");
    if (!opts.yes) {
      if (!Deno.stdin.isTerminal()) {
        console.error(`flor leave: would remove ${what}; confirm with --yes (no terminal to ask)`);
        Deno.exit(1);
      }
      if (!confirm(`Stop the agent and remove ${what}?`)) {
        console.error("flor leave: nothing removed");
        Deno.exit(1);
      }
    }
    for (const line of await leaveBundle()) console.log(line);
  } catch (e) {
    console.error(`flor leave: ${(e as Error).message}`);
    Deno.exit(1);
  }
}

export function main(args: string[], as: Program = program) {
  program = as;
  const cli = new Command(as.name)
    .description(as.description)
    .version(versionLine(as.name), "-V, --version")
    .showHelpAfterError();
  cli.command("run")
    .description("run the agent from a bundle's flor.yaml")
    .option("-c, --config <file>", "flor.yaml of a bundle (default: the one `flor join` installed)")
    .option("--listen <addr>", "QUIC (UDP) address to serve on, overrides listen.quic")
    .option("--socks <addr|off>", "SOCKS5 address, overrides listen.socks")
    .option("--metrics <addr|off>", "metrics/health HTTP address, overrides listen.metrics")
    .option("--state <dir>", "state directory (run marker, restart counters), overrides state_dir")
    .action(run);
  cli.command("reload")
    .description("make the running agent re-read its configuration (works where SIGHUP does not)")
    .option("-c, --config <file>", "its flor.yaml (default: the joined bundle)")
    .option("--metrics <addr>", "its metrics address (default: from the configuration)")
    .option("--state <dir>", "its state directory (default: from the configuration)")
    .action(reload);
  cli.command("status")
    .description("the local agent's view: peers, tunnels, restarts, recent problems")
    .option("-c, --config <file>", "flor.yaml of the agent (default: the joined bundle)")
    .option("--metrics <addr>", "the agent's metrics address (default: from flor.yaml)")
    .option("--json", "print the raw status")
    .action(status);
  if (as.name === "flor") {
    cli.command("forward [listen] [service]")
      .description(
        "forward a local loopback port to a service as this agent's identity, for programs " +
          "without SOCKS5: flor forward [BIND:]PORT SERVICE[.flor][:PORT]",
      )
      .option("-c, --config <file>", "flor.yaml of the agent (default: the joined bundle)")
      .option("--foreground", "run the forward in this process until Ctrl-C (no agent needed)")
      .option("--remove", "remove the running agent's forward on [BIND:]PORT")
      .option("--metrics <addr>", "the running agent's metrics address (default: from flor.yaml)")
      .option("--state <dir>", "the running agent's state directory (default: from flor.yaml)")
      .action((listen: string | undefined, service: string | undefined, o: ForwardOptions) =>
        forwardCmd(listen, service, o, joinedConfig)
      );
    cli.command("env")
      .description("print shell lines that point tools at this agent, and the browsers' PAC URL")
      .option("-c, --config <file>", "flor.yaml of the agent (default: the joined bundle)")
      .option("--shell <shell>", "sh, fish or powershell (default: from the OS and $SHELL)")
      .action((o: EnvOptions) => envCmd(o, joinedConfig));
    cli.command("join <file>")
      .description("install a one-file bundle (from `florctl enroll user`) for this OS user")
      .option("--force", "replace a bundle of another identity")
      .option("--no-service", "do not install the autostart (systemd user unit, ...)")
      .action(joinCmd);
    cli.command("leave")
      .description("stop the agent, remove its autostart, the joined bundle and its state")
      .option("-y, --yes", "do not ask")
      .action(leaveCmd);
  }
  return cli.parseAsync(["deno", as.name, ...args]);
}

if (import.meta.main) await main(Deno.args);

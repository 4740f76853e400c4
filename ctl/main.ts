/**
 * florctl — the operator's CLI. Every command works on a cluster directory (`--dir`,
 * default the current directory) holding cluster.yaml and pki/.
 */
import { Command, Option } from "commander";
import { ConfigError } from "../lib/config_problems.ts";
import { versionLine } from "../lib/version.ts";
import { bundle } from "./commands/bundle.ts";
import { check } from "./commands/check.ts";
import { CtlError, EXIT_FAILED, EXIT_OK } from "./support/ctl_error.ts";
import { init } from "./commands/init.ts";
import { gatewayAdd } from "./commands/gateway_add.ts";
import { gatewayClientAdd } from "./commands/gateway_client_add.ts";
import { nodeAdd } from "./commands/node_add.ts";
import { serviceAdd } from "./commands/service_add.ts";
import { userAdd } from "./commands/user_add.ts";
import { deploy } from "./commands/deploy.ts";
import { enrollNode, enrollUser } from "./commands/enroll.ts";
import { revoke } from "./commands/revoke.ts";
import { rotate } from "./commands/rotate.ts";
import { status } from "./commands/status.ts";
import { doctor } from "./commands/doctor.ts";
import { access } from "./commands/access.ts";

const collect = (v: string, prev: string[]) => [...prev, v];
const dirOption = () => new Option("--dir <dir>", "cluster directory").default(".");

export function buildProgram(): Command {
  const program = new Command("florctl")
    .description("Florete operator CLI: cluster map, identities, bundles")
    .version(versionLine("florctl"), "-V, --version")
    .showHelpAfterError()
    .exitOverride();
  _registerInit(program);
  _registerAdd(program);
  _registerGateway(program);
  _registerChecks(program);
  _registerDelivery(program);
  _registerCertificates(program);
  _registerHealth(program);
  return program;
}

/** `init`: a new cluster directory. */
function _registerInit(program: Command) {
  program.command("init <cluster>")
    .description("create cluster.yaml, the cluster CA and the operator identity")
    .option("--operator <name>", "the operator's user name (role admin)", "admin")
    .addOption(dirOption())
    .action((name, o) => init(name, o.dir, o.operator));
}

/** `node|user|service add`: entries in cluster.yaml. */
function _registerAdd(program: Command) {
  const node = program.command("node").description("manage nodes");
  node.command("add <name>")
    .description("add a node (a server running flor with a public UDP endpoint)")
    .requiredOption("--endpoint <host:port>", "public UDP address of the node")
    .option("--ssh <target>", "ssh destination used by enroll/deploy, e.g. root@host")
    .addOption(dirOption())
    .action((name, o) => nodeAdd(name, o));

  const user = program.command("user").description("manage users");
  user.command("add <name>")
    .description("add a user")
    .option("--group <group>", "group membership (repeat or comma-separate)", collect, [])
    .addOption(dirOption())
    .action((name, o) => userAdd(name, o));

  const service = program.command("service").description("manage services");
  service.command("add <name>")
    .description("publish a TCP target of a node as <name>.flor")
    .requiredOption("--node <node>", "node that hosts the service")
    .requiredOption("--target <host:port>", "TCP address reachable from that node")
    .option(
      "--allow <principals>",
      "who may connect: user:x, group:x, service:x, gateway:x",
      collect,
      [],
    )
    .option("--port <port>", "port clients ask for (default: the target's port)")
    .addOption(dirOption())
    .action((name, o) => serviceAdd(name, o));
}

/** `gateway add`, `gateway client add`: LAN gateways and their clients. */
function _registerGateway(program: Command) {
  const gateway = program.command("gateway").description("manage LAN gateways (flor-gw)");
  gateway.command("add <name>")
    .description("add a gateway: SOCKS5 on a LAN address for devices that cannot run flor")
    .requiredOption("--listen <host:port>", "LAN address the gateway listens on")
    .option(
      "--allow-cidr <cidr>",
      "networks clients may connect from (repeat or comma-separate)",
      collect,
      [],
    )
    .option("--allow-public", "allow a public listen address (off by default)")
    .addOption(dirOption())
    .action((name, o) => gatewayAdd(name, o));
  gateway.command("client").description("manage a gateway's LAN clients")
    .command("add <gateway> <client>")
    .description("add a LAN client; prints its password once")
    .option("--services <names>", "services the client may use (comma-separated)", collect, [])
    .addOption(dirOption())
    .action((gw, client, o) => gatewayClientAdd(gw, client, o));
}

/** `check`, `access`: questions answered from cluster.yaml alone. */
function _registerChecks(program: Command) {
  program.command("check")
    .description("validate cluster.yaml; prints FILE:LINE: problems, exit 1 on errors")
    .addOption(dirOption())
    .action((o) => check(o.dir));

  program.command("access <what>")
    .description("who may reach a service (SERVICE), or what a principal may reach (user:x, ...)")
    .option("--json", "print the answer as JSON")
    .addOption(dirOption())
    .action((what, o) => access(what, o));
}

/** `bundle`, `enroll`, `deploy`: getting files onto machines. */
function _registerDelivery(program: Command) {
  const b = program.command("bundle").description("write the files one machine needs");
  for (const kind of ["node", "user", "gateway"] as const) {
    const what = {
      node: "a node agent",
      user: "a user's laptop",
      gateway: "a LAN gateway (flor-gw)",
    };
    const c = b.command(`${kind} <name>`)
      .description(`bundle for ${what[kind]}`)
      .requiredOption("--out <dir>", "directory to write the bundle to")
      .option("--socks <addr|off>", "SOCKS5 listen address")
      .option("--metrics <addr|off>", "metrics/health listen address")
      .addOption(dirOption());
    if (kind === "node") c.option("--listen <addr>", "QUIC listen address (default from endpoint)");
    c.action((name, o) => bundle(kind, name, o));
  }
  const enroll = program.command("enroll").description("install flor for a node or a user");
  enroll.command("node <name>")
    .description("install, configure and start flor on the node over SSH, then verify it")
    .option("--binary <path>", "flor executable to install (default: dist/ for the node's OS)")
    .option("--prefix <dir>", "relocate every installed path under this directory", undefined)
    .addOption(
      new Option("--init <kind>", "what supervises flor").choices(["systemd", "launchd", "none"]),
    )
    .option("--socks <addr|off>", "the node agent's SOCKS5 address (default 127.0.0.1:<port>)")
    .option("--metrics <addr|off>", "the node agent's metrics address (default 127.0.0.1:9464)")
    .option("--ssh-config <file>", "ssh_config file for ssh -F (default $FLORCTL_SSH_CONFIG)")
    .option("--as <user>", "operator identity (an admin user) used to verify over the mesh")
    .addOption(dirOption())
    .action((name, o) => enrollNode(name, o));
  enroll.command("user <name>")
    .description("write the user's whole bundle into one file for `flor join`")
    .requiredOption("--out <file>", "the file to write (0600: it holds the user's key)")
    .option("--socks <addr>", "SOCKS5 listen address on the user's machine")
    .option("--metrics <addr|off>", "metrics/health listen address")
    .addOption(dirOption())
    .action((name, o) => enrollUser(name, o));

  program.command("deploy")
    .description("push the cluster map and changed certificates to nodes, reload, verify")
    .option("--node <name>", "only this node (repeatable)", collect, [])
    .option("--dry-run", "print what would change per node")
    .option("--ssh-config <file>", "ssh_config file for ssh -F (default $FLORCTL_SSH_CONFIG)")
    .option("--as <user>", "operator identity (an admin user) used to verify over the mesh")
    .addOption(dirOption())
    .action((o) => deploy(o));
}

/** `revoke`, `rotate`: certificates. */
function _registerCertificates(program: Command) {
  program.command("revoke <principal>")
    .description("revoke every certificate of user:x, node:x, service:x or gateway:x")
    .option("--reason <text>", "why (kept in cluster.yaml)")
    .addOption(dirOption())
    .action((who, o) => revoke(who, o));

  program.command("rotate")
    .description("re-issue certificates that expire soon")
    .option("--within <days>", "window, e.g. 30d", "30d")
    .addOption(dirOption())
    .action((o) => rotate(o));
}

/** `status`, `doctor`: asking the running nodes. */
function _registerHealth(program: Command) {
  program.command("status")
    .description("ask every node over the mesh how it is; exit 1 if one is unhealthy")
    .option("--json", "print the report as JSON")
    .option("--as <user>", "operator identity (an admin user) to ask the nodes as")
    .addOption(dirOption())
    .action((o) => status(o));

  program.command("doctor")
    .description("diagnose the cluster: config, certificates, nodes, clocks; exit 1 on failures")
    .option("--json", "print the checks as JSON")
    .option("--as <user>", "operator identity (an admin user) to ask the nodes as")
    .option("--ssh-config <file>", "ssh_config file for ssh -F (default $FLORCTL_SSH_CONFIG)")
    .addOption(dirOption())
    .action((o) => doctor(o));
}

/** Runs florctl with `args`; the exit code is what it returns. */
export async function main(args: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(["deno", "florctl", ...args]);
    return EXIT_OK;
  } catch (e) {
    return reportFailure(e);
  }
}

/** The one place a failure becomes stderr and an exit code (ctl/support/ctl_error.ts). */
export function reportFailure(e: unknown): number {
  if (e instanceof CtlError) {
    if (!e.reported && e.message) console.error(`florctl: ${e.message}`);
    return e.exitCode;
  }
  if (e instanceof ConfigError) {
    console.error(e.message); // FILE:LINE: problems, already in the operator's words
    return EXIT_FAILED;
  }
  const ce = e as { code?: string; exitCode?: number };
  if (typeof ce.code === "string" && ce.code.startsWith("commander.")) {
    return ce.exitCode ?? EXIT_FAILED; // commander already printed help or the usage error
  }
  console.error(`florctl: ${(e as Error).message ?? e}`);
  return EXIT_FAILED;
}

if (import.meta.main) Deno.exit(await main(Deno.args));

/**
 * `flor env [--shell sh|fish|powershell]`: the lines that point a shell's tools at this agent's
 * SOCKS5 port, and where to put the PAC URL for browsers and the OS. Pure: addresses in, text
 * out; agent/main.ts prints it.
 */
import { formatHostPort, type HostPort } from "../lib/host_port.ts";

export const SHELLS = ["sh", "fish", "powershell"] as const;
export type Shell = typeof SHELLS[number];

export interface EnvInput {
  shell: Shell;
  socks: HostPort;
  /** http://127.0.0.1:9465/proxy.pac, or undefined when the agent serves no HTTP. */
  pacUrl?: string;
  principal: string;
  cluster: string;
}

/** PowerShell on Windows, fish when $SHELL is fish, POSIX sh syntax otherwise. */
export function defaultShell(os: string, env: Record<string, string | undefined>): Shell {
  if (os === "windows") return "powershell";
  return /(^|\/)fish$/.test(env.SHELL ?? "") ? "fish" : "sh";
}

const LOAD: Record<Shell, string> = {
  sh: `eval "$(flor env)"`,
  fish: "flor env --shell fish | source",
  powershell: "flor env --shell powershell | Out-String | Invoke-Expression",
};

function setVar(shell: Shell, name: string, value: string): string {
  if (shell === "fish") return `set -gx ${name} '${value}'`;
  if (shell === "powershell") return `$env:${name} = '${value}'`;
  return `export ${name}='${value}'`;
}

/**
 * ALL_PROXY is all-or-nothing: a tool that reads it sends every request through flor, and flor
 * carries only *.flor names. So the variables are for a shell used for cluster work, and the
 * tools that can scope a proxy by host name (git, ssh) get their own lines, as comments so
 * that loading the output changes nothing outside this shell.
 */
export function shellEnv(e: EnvInput): string {
  const socks = formatHostPort(e.socks);
  const url = `socks5h://${socks}`;
  const lines = [
    `# Florete: tools in this shell reach cluster ${e.cluster} services (*.flor) as ${e.principal}`,
    `# through the local agent's SOCKS5 at ${socks}. Load with: ${LOAD[e.shell]}`,
    "# Every request of a tool that reads ALL_PROXY (curl, git over http, pip, ...) goes",
    "# through flor, which carries only *.flor names: use this shell for cluster work.",
    setVar(e.shell, "ALL_PROXY", url),
    setVar(e.shell, "all_proxy", url),
    "# Scoped to *.flor only (the rest stays direct), once per machine:",
    `#   git config --global 'http.http://*.flor.proxy' ${url}`,
    "#   ~/.ssh/config:  Host *.flor",
    `#                     ProxyCommand nc -X 5 -x ${socks} %h %p`,
    "#   apps without SOCKS (psql, JDBC, RDP): flor forward PORT SERVICE",
  ];
  if (e.pacUrl) {
    lines.push(
      `# Browsers and the OS: proxy auto-config (PAC) URL ${e.pacUrl}`,
      "#   Firefox: Settings > General > Network Settings > Settings... >",
      "#            Automatic proxy configuration URL",
      "#   Chrome, Edge: use the OS setting, or start them with --proxy-pac-url=URL",
      "#   macOS: System Settings > Network > (service) > Details... > Proxies >",
      "#          Automatic proxy configuration",
      "#   Windows: Settings > Network & internet > Proxy > Use setup script",
      "#   GNOME: gsettings set org.gnome.system.proxy mode auto; gsettings set",
      `#          org.gnome.system.proxy autoconfig-url '${e.pacUrl}'`,
    );
  } else {
    lines.push(
      "# Browsers: set listen.metrics in flor.yaml and the agent serves a PAC file there.",
    );
  }
  return lines.join("\n") + "\n";
}

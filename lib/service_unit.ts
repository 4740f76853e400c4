/**
 * Service definitions for the agent on each OS. For a node's system service: a systemd
 * unit, a launchd daemon plist, and the sc.exe commands that register a Windows service.
 * For a user's agent (`flor join`): a systemd user unit, a LaunchAgent plist, and a Task
 * Scheduler logon task.
 *
 * Each is first built as data and then rendered by a small serializer that knows the
 * format's quoting rules, so a path with a space, `%`, `$` or `&` cannot change what the
 * service manager reads. Paths come from lib/platform.ts (`nodePaths`, `userService`).
 */

export interface ServiceSpec {
  /** Absolute path of flor. */
  binary: string;
  /** Absolute path of flor.yaml. */
  configFile: string;
  /** The service's writable state directory. */
  stateDir: string;
  /** launchd only: where stdout and stderr go (systemd sends them to the journal). */
  logFile?: string;
  /** True if the config listens on a port below 1024 (grants CAP_NET_BIND_SERVICE). */
  lowPort: boolean;
}

/** What a user's service runs: `command` (how to start flor: lib/platform.ts agentCommand)
 * followed by `run --config configFile`. */
export interface UserServiceSpec {
  command: string[];
  /** Absolute path of the joined flor.yaml. */
  configFile: string;
  /** launchd only: where stdout and stderr go. */
  logFile?: string;
}

const _SERVICE_NAME = "flor";
const _LAUNCHD_LABEL = "dev.florete.flor";
const _DISPLAY_NAME = "Florete agent";
const _DESCRIPTION = "Florete zero-trust service mesh agent (flor)";

// ---------------------------------------------------------------------------------------
// systemd

/** An Exec* word: literal text, or a variable systemd expands when it runs the command. */
type _ExecWord = string | { env: string };

/**
 * A unit file value, by how systemd parses it (systemd.service "Command lines",
 * systemd.unit "Specifiers"): free text, a command line, or a list of paths.
 */
type _UnitValue = string | { exec: _ExecWord[] } | { paths: string[] };

type _Unit = [section: string, entries: [key: string, value: _UnitValue][]][];

/** The systemd unit for the agent (install as /etc/systemd/system/flor.service). */
export function systemdUnit(s: ServiceSpec): string {
  _absolutePosix("binary", s.binary);
  _absolutePosix("configFile", s.configFile);
  _absolutePosix("stateDir", s.stateDir);
  // An empty bounding set leaves the agent, though root, with no capability at all; a low
  // port needs exactly one. Ambient is what would keep it across a User= switch.
  const capabilities: [string, _UnitValue][] = s.lowPort
    ? [
      ["AmbientCapabilities", "CAP_NET_BIND_SERVICE"],
      ["CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"],
    ]
    : [["CapabilityBoundingSet", ""]];
  const unit: _Unit = [
    ["Unit", [
      ["Description", _DISPLAY_NAME],
      ["After", "network-online.target"],
      ["Wants", "network-online.target"],
    ]],
    ["Service", [
      ["Type", "simple"],
      ["ExecStart", { exec: [s.binary, "run", "--config", s.configFile] }],
      // The agent reloads flor.yaml and the cluster map on SIGHUP.
      ["ExecReload", { exec: ["/bin/kill", "-HUP", { env: "MAINPID" }] }],
      ["Restart", "on-failure"],
      ["RestartSec", "2s"],
      ["NoNewPrivileges", "yes"],
      ["ProtectSystem", "strict"],
      ["ReadWritePaths", { paths: [s.stateDir] }],
      ["ProtectHome", "yes"],
      ["PrivateTmp", "yes"],
      ...capabilities,
    ]],
    ["Install", [
      ["WantedBy", "multi-user.target"],
    ]],
  ];
  return _renderUnit(unit);
}

/**
 * The systemd user unit for a user's agent (install as ~/.config/systemd/user/flor.service).
 * It starts with the user's session (default.target), or at boot with `loginctl
 * enable-linger`. The system unit's sandboxing needs privileges a user manager lacks.
 */
export function systemdUserUnit(s: UserServiceSpec): string {
  _command(s.command, _absolutePosix);
  _absolutePosix("configFile", s.configFile);
  return _renderUnit([
    ["Unit", [
      ["Description", _DISPLAY_NAME],
    ]],
    ["Service", [
      ["Type", "simple"],
      ["ExecStart", { exec: [...s.command, "run", "--config", s.configFile] }],
      ["ExecReload", { exec: ["/bin/kill", "-HUP", { env: "MAINPID" }] }],
      ["Restart", "on-failure"],
      ["RestartSec", "2s"],
      ["NoNewPrivileges", "yes"],
    ]],
    ["Install", [
      ["WantedBy", "default.target"],
    ]],
  ]);
}

function _command(command: string[], absolute: (field: string, path: string) => void): void {
  if (command.length === 0) throw new Error("UserServiceSpec.command is empty");
  absolute("command[0]", command[0]);
}

function _renderUnit(unit: _Unit): string {
  return unit.map(([section, entries]) =>
    `[${section}]\n` +
    entries.map(([key, value]) => `${key}=${_unitValue(key, value)}\n`).join("")
  ).join("\n");
}

function _unitValue(key: string, value: _UnitValue): string {
  if (typeof value === "string") {
    // systemd strips surrounding blanks and joins a line ending in "\" with the next.
    if (/^\s|\s$|\\$/.test(value)) {
      throw new Error(`${key}: "${value}" would be altered by systemd's line parser`);
    }
    return _specifierSafe(key, value);
  }
  if ("exec" in value) {
    return value.exec.map((w, i) => {
      if (typeof w !== "string") {
        if (i === 0 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(w.env)) {
          throw new Error(`${key}: "${w.env}" cannot be expanded there`);
        }
        return `$${w.env}`;
      }
      // In arguments "$$" is a literal dollar ("$NAME" and "${NAME}" are expanded); the
      // executable path is never expanded, so there a doubled dollar would stay doubled.
      return _unitWord(key, i === 0 ? w : w.replaceAll("$", () => "$$"));
    }).join(" ");
  }
  return value.paths.map((p) => _unitWord(key, p)).join(" ");
}

/** One word of a whitespace-separated value, double-quoted when it needs to be. */
function _unitWord(key: string, word: string): string {
  const text = _specifierSafe(key, word);
  // Blanks split words, quotes and backslashes are syntax, a lone ";" separates commands.
  if (text !== "" && !/[\s"'\\;]/.test(text)) return text;
  return `"${text.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/** Doubles "%" so systemd does not expand it as a specifier (%h, %n, ...). */
function _specifierSafe(key: string, text: string): string {
  // A line break would end the assignment and start a new one: refuse rather than escape.
  // deno-lint-ignore no-control-regex -- looking for control characters is the point
  if (/[\x00-\x1f\x7f]/.test(text)) {
    throw new Error(`${key}: ${JSON.stringify(text)} contains a control character`);
  }
  return text.replaceAll("%", "%%");
}

function _absolutePosix(field: string, path: string): void {
  if (!path.startsWith("/")) {
    throw new Error(`ServiceSpec.${field} must be an absolute path, got "${path}"`);
  }
}

// ---------------------------------------------------------------------------------------
// launchd

type _Plist = string | boolean | number | _Plist[] | { [key: string]: _Plist };

/** The launchd daemon for the agent (install as /Library/LaunchDaemons/dev.florete.flor.plist). */
export function launchdPlist(s: ServiceSpec): string {
  _absolutePosix("binary", s.binary);
  _absolutePosix("configFile", s.configFile);
  const job: Record<string, _Plist> = {
    Label: _LAUNCHD_LABEL,
    ProgramArguments: [s.binary, "run", "--config", s.configFile],
    RunAtLoad: true,
    KeepAlive: true,
  };
  if (s.logFile !== undefined) {
    // launchd opens the file but does not create its directory; the installer must.
    _absolutePosix("logFile", s.logFile);
    job.StandardOutPath = s.logFile;
    job.StandardErrorPath = s.logFile;
  }
  return _plistDocument(job);
}

/**
 * The LaunchAgent for a user's agent (install as ~/Library/LaunchAgents/dev.florete.flor.plist):
 * started at login, restarted when it fails, left stopped when it exits cleanly.
 */
export function launchAgentPlist(s: UserServiceSpec): string {
  _command(s.command, _absolutePosix);
  _absolutePosix("configFile", s.configFile);
  const job: Record<string, _Plist> = {
    Label: _LAUNCHD_LABEL,
    ProgramArguments: [...s.command, "run", "--config", s.configFile],
    RunAtLoad: true,
    KeepAlive: { SuccessfulExit: false },
  };
  if (s.logFile !== undefined) {
    _absolutePosix("logFile", s.logFile);
    job.StandardOutPath = s.logFile;
    job.StandardErrorPath = s.logFile;
  }
  return _plistDocument(job);
}

function _plistDocument(job: Record<string, _Plist>): string {
  return '<?xml version="1.0" encoding="UTF-8"?>\n' +
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" ' +
    '"http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n' +
    '<plist version="1.0">\n' +
    _plistValue(job, "") +
    "</plist>\n";
}

/** One value as XML, indented by `indent`, ending with a newline (tabs, as Apple writes). */
function _plistValue(v: _Plist, indent: string): string {
  if (typeof v === "string") return `${indent}<string>${_xmlText(v)}</string>\n`;
  if (typeof v === "boolean") return `${indent}<${v}/>\n`;
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) throw new RangeError(`plist integer ${v} is not a safe integer`);
    return `${indent}<integer>${v}</integer>\n`;
  }
  const inner = indent + "\t";
  if (Array.isArray(v)) {
    if (v.length === 0) return `${indent}<array/>\n`;
    return `${indent}<array>\n${v.map((x) => _plistValue(x, inner)).join("")}${indent}</array>\n`;
  }
  const entries = Object.entries(v);
  if (entries.length === 0) return `${indent}<dict/>\n`;
  const body = entries.map(([k, x]) =>
    `${inner}<key>${_xmlText(k)}</key>\n${_plistValue(x, inner)}`
  );
  return `${indent}<dict>\n${body.join("")}${indent}</dict>\n`;
}

function _xmlText(text: string): string {
  // XML 1.0 cannot carry most control characters at all, and parsers turn CR into LF.
  // deno-lint-ignore no-control-regex -- looking for control characters is the point
  if (/[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]/.test(text)) {
    throw new Error(`plist: ${JSON.stringify(text)} contains a character XML cannot carry`);
  }
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

// ---------------------------------------------------------------------------------------
// Windows

/**
 * The sc.exe commands (argv arrays, run in order) that register the agent as a Windows
 * service starting at boot and restarting when it fails. sc.exe takes each option as a
 * name ending in "=" followed by its value as the next argument.
 */
export function windowsServiceCommands(s: ServiceSpec): string[][] {
  const binPath = `${_windowsQuoted("binary", s.binary)} run --config ${
    _windowsQuoted("configFile", s.configFile)
  }`;
  return [
    [
      "sc.exe",
      "create",
      _SERVICE_NAME,
      "binPath=",
      binPath,
      "start=",
      "auto",
      "DisplayName=",
      _DISPLAY_NAME,
    ],
    // Restart after 2 s, 2 s, then 10 s; the failure count resets after a day without one.
    [
      "sc.exe",
      "failure",
      _SERVICE_NAME,
      "reset=",
      "86400",
      "actions=",
      "restart/2000/restart/2000/restart/10000",
    ],
    ["sc.exe", "description", _SERVICE_NAME, _DESCRIPTION],
  ];
}

/**
 * A path quoted for the service's command line. Windows file names cannot contain '"',
 * and a file path never ends in "\", so plain quotes are exact (no backslash doubling).
 */
function _windowsQuoted(field: string, path: string): string {
  if (!/^([a-z]:\\|\\\\[^\\])/i.test(path)) {
    throw new Error(`ServiceSpec.${field} must be an absolute Windows path, got "${path}"`);
  }
  // deno-lint-ignore no-control-regex -- looking for control characters is the point
  if (/["\x00-\x1f]/.test(path) || path.endsWith("\\")) {
    throw new Error(`ServiceSpec.${field} is not a valid Windows file path: "${path}"`);
  }
  return `"${path}"`;
}

/**
 * The Task Scheduler definition (XML for `schtasks /Create /XML`) of a user's agent: started
 * at `userId`'s logon with that user's rights, restarted every minute when it fails, never
 * stopped for running long (the default limit is 72 hours).
 */
export function windowsLogonTask(s: UserServiceSpec & { userId: string }): string {
  _command(s.command, _windowsAbsolute);
  _windowsAbsolute("configFile", s.configFile);
  const args = [...s.command.slice(1), "run", "--config", s.configFile].map(_windowsArg);
  const x = _xmlText;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">',
    "  <RegistrationInfo>",
    `    <Description>${x(_DESCRIPTION)}</Description>`,
    "  </RegistrationInfo>",
    "  <Triggers>",
    "    <LogonTrigger>",
    "      <Enabled>true</Enabled>",
    `      <UserId>${x(s.userId)}</UserId>`,
    "    </LogonTrigger>",
    "  </Triggers>",
    "  <Principals>",
    '    <Principal id="Author">',
    `      <UserId>${x(s.userId)}</UserId>`,
    "      <LogonType>InteractiveToken</LogonType>",
    "      <RunLevel>LeastPrivilege</RunLevel>",
    "    </Principal>",
    "  </Principals>",
    "  <Settings>",
    "    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>",
    "    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>",
    "    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>",
    "    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>",
    "    <RestartOnFailure>",
    "      <Interval>PT1M</Interval>",
    "      <Count>999</Count>",
    "    </RestartOnFailure>",
    "  </Settings>",
    '  <Actions Context="Author">',
    "    <Exec>",
    `      <Command>${x(_windowsArg(s.command[0]))}</Command>`,
    `      <Arguments>${x(args.join(" "))}</Arguments>`,
    "    </Exec>",
    "  </Actions>",
    "</Task>",
    "",
  ].join("\r\n");
}

function _windowsAbsolute(field: string, path: string): void {
  _windowsQuoted(field, path);
}

/** One argument of a Windows command line: quoted when it has a blank; never a '"'. */
function _windowsArg(word: string): string {
  // deno-lint-ignore no-control-regex -- looking for control characters is the point
  if (/["\x00-\x1f]/.test(word)) {
    throw new Error(`cannot pass ${JSON.stringify(word)} on a Windows command line`);
  }
  if (!/\s/.test(word) && word !== "") return word;
  // Backslashes before the closing quote would escape it (CommandLineToArgvW).
  return `"${word.replace(/\\+$/, (b) => b + b)}"`;
}

/** The definition file of a user's service of `kind` (lib/platform.ts `userService`). */
export function userServiceDefinition(
  kind: "systemd-user" | "launch-agent" | "logon-task",
  s: UserServiceSpec & { userId?: string },
): string {
  switch (kind) {
    case "systemd-user":
      return systemdUserUnit(s);
    case "launch-agent":
      return launchAgentPlist(s);
    case "logon-task":
      if (s.userId === undefined) throw new Error("a logon task needs the user's DOMAIN\\name");
      return windowsLogonTask({ ...s, userId: s.userId });
  }
}

/**
 * The per-user service `flor join` installs and `flor leave` removes, so a user's agent
 * starts with their session: systemd user unit, LaunchAgent, or Task Scheduler logon task.
 * What to write and which commands to run come from lib/platform.ts (`userService`) and
 * lib/service_unit.ts; this file writes the file and runs the commands.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeFileAtomic } from "../lib/atomic_file.ts";
import { exists } from "../lib/file_exists.ts";
import { agentCommand, currentTarget, type UserService, userService } from "../lib/platform.ts";
import { userServiceDefinition } from "../lib/service_unit.ts";

export function thisUserService(): UserService {
  const env = Deno.env.toObject();
  return userService(
    currentTarget().os,
    env,
    Deno.build.os === "windows" ? undefined : Deno.uid() ?? undefined,
  );
}

export interface InstallResult {
  file: string;
  /** The service manager took it and started the agent. */
  started: boolean;
  /** Lines for the user: where it is, and what to do when it could not be started. */
  say: string[];
}

/** Writes the service definition for `configFile` and asks the service manager to start it. */
export async function installUserService(configFile: string): Promise<InstallResult> {
  const os = currentTarget().os;
  const service = thisUserService();
  const env = Deno.env.toObject();
  // A compiled flor's main module is inside the executable, not a file on disk.
  const main = fileURLToPath(Deno.mainModule);
  const mainPath = await Deno.realPath(main).catch(() => main);
  const definition = userServiceDefinition(service.kind, {
    command: agentCommand({
      os,
      // Real paths: a release reached through a symlink is still recognised as one.
      execPath: await Deno.realPath(Deno.execPath()),
      mainPath,
      denoConfig: await _denoConfigNear(mainPath),
    }),
    configFile,
    logFile: service.logFile,
    userId: env.USERNAME
      ? `${env.USERDOMAIN ? env.USERDOMAIN + "\\" : ""}${env.USERNAME}`
      : undefined,
  });
  // Joining again (a new bundle): stop the running agent first so the new one starts from
  // the new files; launchd also refuses to bootstrap a job it already has.
  if (await exists(service.file)) {
    for (const argv of service.uninstall) await runCommand(argv);
  }
  await Deno.mkdir(dirname(service.file), { recursive: true });
  if (service.logFile) await Deno.mkdir(dirname(service.logFile), { recursive: true });
  await writeFileAtomic(service.file, definition, 0o644);
  for (const argv of service.install) {
    const r = await runCommand(argv);
    if (!r.ok) {
      return {
        file: service.file,
        started: false,
        say: [
          `autostart: \`${argv.join(" ")}\` failed (${r.said}); ${_notStarted(service)}`,
          `start the agent now with: flor run`,
        ],
      };
    }
  }
  const say = [`autostart: ${_what(service)} ${service.file} is enabled and the agent started`];
  if (service.kind === "systemd-user") {
    say.push("it starts when you log in; to start it at boot too: loginctl enable-linger $USER");
  }
  return { file: service.file, started: true, say };
}

/** Stops and unregisters the service and deletes its file; true if there was one. */
export async function removeUserService(): Promise<boolean> {
  const service = thisUserService();
  if (!await exists(service.file)) return false;
  for (const argv of service.uninstall) await runCommand(argv); // may be stopped already
  await Deno.remove(service.file).catch(() => {});
  for (const argv of service.afterRemove) await runCommand(argv);
  return true;
}

function _what(s: UserService): string {
  return {
    "systemd-user": "systemd user unit",
    "launch-agent": "LaunchAgent",
    "logon-task": "logon task",
  }[
    s.kind
  ];
}

function _notStarted(s: UserService): string {
  switch (s.kind) {
    case "systemd-user":
      return `no systemd user manager runs for this session. The unit is in ${s.file}: ` +
        "where systemd manages your login it starts the agent from your next login on " +
        "(after `systemctl --user enable flor.service`)";
    case "launch-agent":
      return `the LaunchAgent in ${s.file} starts the agent from your next login on`;
    case "logon-task":
      return `the task definition is in ${s.file}; register it with ` +
        `\`schtasks /Create /TN \\Florete\\flor /XML "${s.file}"\``;
  }
}

/** Runs a command to the end; ok with exit 0, otherwise what went wrong in a few words. */
export async function runCommand(argv: string[]): Promise<{ ok: boolean; said: string }> {
  try {
    const out = await new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stderr).trim() ||
      new TextDecoder().decode(out.stdout).trim();
    return { ok: out.success, said: text.split("\n")[0] || `exit ${out.code}` };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return { ok: false, said: `${argv[0]} is not installed` };
    }
    return { ok: false, said: (e as Error).message };
  }
}

/** The deno.json of a source checkout the module runs from (undefined for a release). */
async function _denoConfigNear(mainPath: string): Promise<string | undefined> {
  for (let dir = dirname(mainPath);; dir = dirname(dir)) {
    const candidate = join(dir, "deno.json");
    if (await Deno.stat(candidate).then((s) => s.isFile, () => false)) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

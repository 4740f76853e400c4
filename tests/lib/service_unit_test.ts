import assert from "node:assert/strict";
import {
  launchAgentPlist,
  launchdPlist,
  type ServiceSpec,
  systemdUnit,
  systemdUserUnit,
  type UserServiceSpec,
  windowsLogonTask,
  windowsServiceCommands,
} from "../../lib/service_unit.ts";
import {
  agentCommand,
  nodePaths,
  type Os,
  userConfigDir,
  userService,
} from "../../lib/platform.ts";

// UPDATE_GOLDEN=1 rewrites the files instead of comparing; review the diff before committing.
const UPDATE_GOLDEN = Deno.env.get("UPDATE_GOLDEN") === "1";
const GOLDEN_DIR = new URL("./golden/", import.meta.url);

async function assertGolden(name: string, actual: string): Promise<void> {
  const file = new URL(name, GOLDEN_DIR);
  if (UPDATE_GOLDEN) {
    await Deno.mkdir(GOLDEN_DIR, { recursive: true });
    await Deno.writeTextFile(file, actual);
    return;
  }
  // Strict decoding keeps a BOM or a stray byte visible, so equal strings mean equal bytes.
  const want = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
    .decode(await Deno.readFile(file));
  assert.equal(
    actual,
    want,
    `${name} differs from tests/lib/golden/${name}; if intended, rerun with UPDATE_GOLDEN=1`,
  );
}

function specFor(os: Os, lowPort = false): ServiceSpec {
  const p = nodePaths(os);
  return { binary: p.binary, configFile: p.configFile, stateDir: p.state, logFile: p.log, lowPort };
}

/** A user who unpacked a release archive in their home and joined a bundle. */
const USER_ENV: Record<Os, Record<string, string>> = {
  linux: { HOME: "/home/alice" },
  darwin: { HOME: "/Users/alice" },
  windows: { APPDATA: "C:\\Users\\alice\\AppData\\Roaming" },
};

function userSpecFor(os: Os): UserServiceSpec {
  const release = {
    linux: "/home/alice/florete-0.1.0-linux-x64",
    darwin: "/Users/alice/Applications/florete-0.1.0-darwin-arm64",
    windows: "C:\\Users\\alice\\florete-0.1.0-windows-x64",
  }[os];
  const sep = os === "windows" ? "\\" : "/";
  const command = agentCommand({
    os,
    execPath: `${release}${sep}runtime${sep}deno${os === "windows" ? ".exe" : ""}`,
    mainPath: `${release}${sep}lib${sep}flor.js`,
  });
  const configFile = `${userConfigDir(os, USER_ENV[os])}${sep}flor.yaml`;
  return { command, configFile, logFile: userService(os, USER_ENV[os], 501).logFile };
}

/** The value of each `key=` line, in order. */
function unitValues(unit: string, key: string): string[] {
  return unit.split("\n").filter((l) => l.startsWith(`${key}=`)).map((l) =>
    l.slice(key.length + 1)
  );
}

Deno.test("service unit: systemd unit matches the golden file", async () => {
  await assertGolden("flor.service", systemdUnit(specFor("linux")));
});

Deno.test("service unit: systemd unit for a low port matches the golden file", async () => {
  await assertGolden("flor-lowport.service", systemdUnit(specFor("linux", true)));
});

Deno.test("service unit: launchd plist matches the golden file", async () => {
  await assertGolden("dev.florete.flor.plist", launchdPlist(specFor("darwin")));
});

Deno.test("service unit: sc.exe commands match the golden file", async () => {
  const json = JSON.stringify(windowsServiceCommands(specFor("windows")), null, 2) + "\n";
  await assertGolden("windows-sc.json", json);
});

Deno.test("service unit: systemd user unit matches the golden file", async () => {
  await assertGolden("flor-user.service", systemdUserUnit(userSpecFor("linux")));
});

Deno.test("service unit: LaunchAgent plist matches the golden file", async () => {
  await assertGolden("launch-agent.plist", launchAgentPlist(userSpecFor("darwin")));
});

Deno.test("service unit: Windows logon task matches the golden file", async () => {
  const xml = windowsLogonTask({ ...userSpecFor("windows"), userId: "ACME\\alice" });
  await assertGolden("flor-logon-task.xml", xml);
});

Deno.test("service unit: a user unit from a source checkout runs deno with its deno.json", () => {
  const command = agentCommand({
    os: "linux",
    execPath: "/usr/local/bin/deno",
    mainPath: "/home/alice/src/florete/agent/main.ts",
    denoConfig: "/home/alice/src/florete/deno.json",
  });
  const unit = systemdUserUnit({ command, configFile: "/home/alice/.config/florete/flor.yaml" });
  assert.deepEqual(unitValues(unit, "ExecStart"), [
    "/usr/local/bin/deno run --allow-all --v8-flags=--expose-gc,--max-semi-space-size=1 --config " +
    "/home/alice/src/florete/deno.json /home/alice/src/florete/agent/main.ts run --config " +
    "/home/alice/.config/florete/flor.yaml",
  ]);
});

Deno.test("service unit: user definitions quote what their format needs", () => {
  const unit = systemdUserUnit({
    command: ["/home/a b/flor"],
    configFile: "/home/a b/.config/florete/100%.yaml",
  });
  assert.deepEqual(unitValues(unit, "ExecStart"), [
    '"/home/a b/flor" run --config "/home/a b/.config/florete/100%%.yaml"',
  ]);
  const task = windowsLogonTask({
    command: ["C:\\Program Files\\R&D\\flor.cmd"],
    configFile: "C:\\Users\\a b\\AppData\\Roaming\\Florete\\flor.yaml",
    userId: "ACME\\a<b",
  });
  assert.match(task, /<Command>"C:\\Program Files\\R&amp;D\\flor\.cmd"<\/Command>/);
  assert.match(
    task,
    /<Arguments>run --config "C:\\Users\\a b\\AppData\\Roaming\\Florete\\flor\.yaml"<\/Arguments>/,
  );
  assert.match(task, /<UserId>ACME\\a&lt;b<\/UserId>/);
  assert.throws(
    () =>
      windowsLogonTask({ command: ['C:\\x\\"flor.cmd'], configFile: "C:\\f.yaml", userId: "u" }),
    /not a valid Windows file path/,
  );
  assert.throws(() => systemdUserUnit({ command: [], configFile: "/f.yaml" }), /command is empty/);
  assert.throws(() => launchAgentPlist({ command: ["flor"], configFile: "/f.yaml" }), /absolute/);
});

Deno.test("service unit: only a low port gets CAP_NET_BIND_SERVICE", () => {
  const plain = systemdUnit(specFor("linux"));
  assert.deepEqual(unitValues(plain, "CapabilityBoundingSet"), [""]);
  assert.deepEqual(unitValues(plain, "AmbientCapabilities"), []);
  assert.doesNotMatch(plain, /CAP_NET_BIND_SERVICE/);

  const low = systemdUnit(specFor("linux", true));
  assert.deepEqual(unitValues(low, "CapabilityBoundingSet"), ["CAP_NET_BIND_SERVICE"]);
  assert.deepEqual(unitValues(low, "AmbientCapabilities"), ["CAP_NET_BIND_SERVICE"]);
});

Deno.test("service unit: paths with spaces are quoted in ExecStart and ReadWritePaths", () => {
  const unit = systemdUnit({
    binary: "/opt/my apps/flor",
    configFile: "/etc/flor ete/flor.yaml",
    stateDir: "/var/lib/flor ete",
    lowPort: false,
  });
  assert.deepEqual(unitValues(unit, "ExecStart"), [
    '"/opt/my apps/flor" run --config "/etc/flor ete/flor.yaml"',
  ]);
  assert.deepEqual(unitValues(unit, "ReadWritePaths"), ['"/var/lib/flor ete"']);
});

Deno.test("service unit: systemd specifiers, variables and escapes stay literal", () => {
  const unit = systemdUnit({
    binary: "/opt/a%h$b/flor",
    configFile: '/etc/x"y\\z/$HOME;.yaml',
    stateDir: "/var/lib/100%",
    lowPort: false,
  });
  assert.deepEqual(unitValues(unit, "ExecStart"), [
    // The executable path is not variable-expanded, so its "$" stays single.
    '/opt/a%%h$b/flor run --config "/etc/x\\"y\\\\z/$$HOME;.yaml"',
  ]);
  assert.deepEqual(unitValues(unit, "ReadWritePaths"), ["/var/lib/100%%"]);
  assert.deepEqual(unitValues(unit, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
});

Deno.test("service unit: systemd refuses what it cannot express", () => {
  const ok: ServiceSpec = {
    binary: "/opt/florete/bin/flor",
    configFile: "/etc/florete/flor.yaml",
    stateDir: "/var/lib/florete",
    lowPort: false,
  };
  assert.throws(() => systemdUnit({ ...ok, binary: "flor" }), /binary must be an absolute path/);
  assert.throws(
    () => systemdUnit({ ...ok, configFile: "/etc/a\nExecStartPre=/bin/sh" }),
    /ExecStart: .* contains a control character/,
  );
  assert.throws(() => systemdUnit({ ...ok, stateDir: "var" }), /stateDir must be an absolute/);
});

Deno.test("service unit: plist escapes & < > in strings", () => {
  const plist = launchdPlist({
    binary: "/Applications/R&D <test>/flor",
    configFile: "/etc/a&b.yaml",
    stateDir: "/var/db/florete",
    logFile: "/var/log/<flor>.log",
    lowPort: false,
  });
  assert.match(plist, /<string>\/Applications\/R&amp;D &lt;test&gt;\/flor<\/string>/);
  assert.match(plist, /<string>\/etc\/a&amp;b\.yaml<\/string>/);
  assert.match(plist, /<key>StandardErrorPath<\/key>\n\t<string>\/var\/log\/&lt;flor&gt;\.log/);
  // Every "&" starts an entity, and no raw "<" or ">" is left inside element text.
  assert.doesNotMatch(plist, /&(?!amp;|lt;|gt;)/);
  assert.doesNotMatch(plist, />[^<\n]*[<>][^<\n]*</);
});

Deno.test("service unit: plist without a log file leaves output to launchd", () => {
  const plist = launchdPlist({ ...specFor("darwin"), logFile: undefined });
  assert.doesNotMatch(plist, /StandardOutPath|StandardErrorPath/);
  assert.match(plist, /<key>KeepAlive<\/key>\n\t<true\/>/);
});

Deno.test("service unit: plist refuses characters XML cannot carry", () => {
  assert.throws(
    () => launchdPlist({ ...specFor("darwin"), configFile: "/etc/a\x01b.yaml" }),
    /character XML cannot carry/,
  );
});

Deno.test("service unit: sc.exe takes each option value as the next argument", () => {
  const [create, failure, description] = windowsServiceCommands(specFor("windows"));
  const binPath = create[create.indexOf("binPath=") + 1];
  assert.equal(
    binPath,
    '"C:\\ProgramData\\Florete\\bin\\flor.exe" run --config ' +
      '"C:\\ProgramData\\Florete\\etc\\flor.yaml"',
  );
  assert.equal(create[create.indexOf("start=") + 1], "auto");
  assert.equal(failure[failure.indexOf("reset=") + 1], "86400");
  assert.deepEqual(description.slice(0, 3), ["sc.exe", "description", "flor"]);
  for (const argv of [create, failure, description]) {
    assert.ok(!argv.some((a) => /^\S+=\S/.test(a)), `option glued to its value in ${argv}`);
  }
});

Deno.test("service unit: sc.exe refuses paths it cannot quote", () => {
  const spec = specFor("windows");
  assert.throws(
    () => windowsServiceCommands({ ...spec, binary: "flor.exe" }),
    /binary must be an absolute Windows path/,
  );
  assert.throws(
    () => windowsServiceCommands({ ...spec, configFile: 'C:\\a"b\\flor.yaml' }),
    /configFile is not a valid Windows file path/,
  );
});

async function hasCommand(name: string): Promise<boolean> {
  try {
    await new Deno.Command(name, { args: ["--version"], stdout: "null", stderr: "null" }).output();
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

const HAS_SYSTEMD_ANALYZE = await hasCommand("systemd-analyze");

Deno.test({
  name: "service unit: systemd-analyze verify accepts the units, spaces and % included",
  ignore: !HAS_SYSTEMD_ANALYZE,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "flor unit %n " });
    try {
      // verify checks that ExecStart's executable exists, which proves the quoting.
      const p = nodePaths("linux", dir);
      await Deno.mkdir(p.bin, { recursive: true });
      await Deno.writeTextFile(p.binary, "#!/bin/sh\n", { mode: 0o755 });
      const node = { binary: p.binary, configFile: p.configFile, stateDir: p.state };
      const units = {
        system: systemdUnit({ ...node, lowPort: false }),
        "system, low port": systemdUnit({ ...node, lowPort: true }),
        // A user manager cannot run here; verified as a system unit, its syntax and
        // ExecStart are what is checked.
        user: systemdUserUnit({ command: [p.binary], configFile: p.configFile }),
      };
      for (const [name, text] of Object.entries(units)) {
        const unit = `${dir}/flor.service`;
        await Deno.writeTextFile(unit, text);
        const out = await new Deno.Command("systemd-analyze", {
          args: ["verify", "--man=no", unit],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
        assert.equal(out.code, 0, `${name}: ${said}`);
        assert.doesNotMatch(said, /flor\.service/, `${name}: ${said}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

import assert from "node:assert/strict";
import {
  agentCommand,
  currentTarget,
  nodePaths,
  type Os,
  parseUname,
  stopProcessCommand,
  type Target,
  targetName,
  USER_SERVICE_PROGRAMS,
  userConfigDir,
  userService,
} from "../../lib/platform.ts";

Deno.test("platform: target names match the release archives", () => {
  assert.equal(targetName({ os: "linux", arch: "x64" }), "linux-x64");
  assert.equal(targetName({ os: "darwin", arch: "arm64" }), "darwin-arm64");
  assert.equal(targetName({ os: "windows", arch: "x64" }), "windows-x64");
});

Deno.test("platform: uname -sm output maps to a target", () => {
  const table: [string, Target][] = [
    ["Linux x86_64", { os: "linux", arch: "x64" }],
    ["Linux aarch64", { os: "linux", arch: "arm64" }],
    ["Linux aarch64\n", { os: "linux", arch: "arm64" }],
    ["Darwin arm64", { os: "darwin", arch: "arm64" }],
    ["Darwin x86_64", { os: "darwin", arch: "x64" }],
    ["  Darwin   x86_64  ", { os: "darwin", arch: "x64" }],
    ["Windows_NT AMD64", { os: "windows", arch: "x64" }],
    ["Windows ARM64", { os: "windows", arch: "arm64" }],
    ["MINGW64_NT-10.0-19045 x86_64", { os: "windows", arch: "x64" }],
    ["MSYS_NT-10.0-22631 x86_64", { os: "windows", arch: "x64" }],
    ["CYGWIN_NT-10.0-26100 aarch64", { os: "windows", arch: "arm64" }],
  ];
  for (const [text, want] of table) {
    assert.deepEqual(parseUname(text), want, JSON.stringify(text));
  }
});

Deno.test("platform: uname errors name the unsupported system or machine", () => {
  const table: [string, RegExp][] = [
    ["FreeBSD amd64", /unsupported system "FreeBSD"/],
    ["SunOS i86pc", /unsupported system "SunOS"/],
    ["Linux armv7l", /unsupported architecture "armv7l"/],
    ["Linux i686", /unsupported architecture "i686"/],
    ["Darwin ppc", /unsupported architecture "ppc"/],
    ["Windows_NT x86", /unsupported architecture "x86"/],
    ["", /expected "<system> <machine>"/],
    ["Linux", /expected "<system> <machine>"/],
    // `uname -a` by mistake: refused rather than guessed from.
    ["Linux host 6.1.0-18-amd64 #1 SMP x86_64 GNU/Linux", /as printed by uname -sm/],
  ];
  for (const [text, message] of table) {
    assert.throws(() => parseUname(text), message, JSON.stringify(text));
  }
});

Deno.test("platform: the current target is one we build", () => {
  const t = currentTarget();
  assert.ok(["linux", "darwin", "windows"].includes(t.os));
  assert.ok(["x64", "arm64"].includes(t.arch));
  assert.equal(t.os, Deno.build.os);
});

Deno.test("platform: linux node paths", () => {
  const want = {
    bin: "/opt/florete/bin",
    binary: "/opt/florete/bin/flor",
    previous: "/opt/florete/bin/flor.previous",
    config: "/etc/florete",
    configFile: "/etc/florete/flor.yaml",
    state: "/var/lib/florete",
    log: "/var/log/florete/flor.log",
    pidFile: "/var/lib/florete/flor.pid",
    unit: "/etc/systemd/system/flor.service",
    sysctl: "/etc/sysctl.d/60-florete.conf",
  };
  assert.deepEqual(nodePaths("linux"), want);
  assert.deepEqual(nodePaths("linux", "/"), want);
});

Deno.test("platform: darwin node paths", () => {
  const root = "/Library/Application Support/Florete";
  assert.deepEqual(nodePaths("darwin"), {
    bin: `${root}/bin`,
    binary: `${root}/bin/flor`,
    previous: `${root}/bin/flor.previous`,
    config: `${root}/etc`,
    configFile: `${root}/etc/flor.yaml`,
    state: `${root}/state`,
    log: "/Library/Logs/Florete/flor.log",
    pidFile: `${root}/state/flor.pid`,
    unit: "/Library/LaunchDaemons/dev.florete.flor.plist",
  });
});

Deno.test("platform: windows node paths live under ProgramData and have no unit file", () => {
  const paths = nodePaths("windows");
  assert.deepEqual(paths, {
    bin: "C:\\ProgramData\\Florete\\bin",
    binary: "C:\\ProgramData\\Florete\\bin\\flor.exe",
    previous: "C:\\ProgramData\\Florete\\bin\\flor.previous.exe",
    config: "C:\\ProgramData\\Florete\\etc",
    configFile: "C:\\ProgramData\\Florete\\etc\\flor.yaml",
    state: "C:\\ProgramData\\Florete\\state",
    log: "C:\\ProgramData\\Florete\\log\\flor.log",
    pidFile: "C:\\ProgramData\\Florete\\state\\flor.pid",
  });
  assert.equal("unit" in paths, false);
  assert.deepEqual(nodePaths("windows", "/"), paths);
});

type NodeSpot = { binary: string; configFile: string; unit: string | undefined };

Deno.test("platform: a prefix relocates every path", () => {
  const cases: [Os, string, NodeSpot][] = [
    ["linux", "/tmp/n1", {
      binary: "/tmp/n1/opt/florete/bin/flor",
      configFile: "/tmp/n1/etc/florete/flor.yaml",
      unit: "/tmp/n1/etc/systemd/system/flor.service",
    }],
    ["linux", "/tmp/n1/", {
      binary: "/tmp/n1/opt/florete/bin/flor",
      configFile: "/tmp/n1/etc/florete/flor.yaml",
      unit: "/tmp/n1/etc/systemd/system/flor.service",
    }],
    ["darwin", "/tmp/m 1", {
      binary: "/tmp/m 1/Library/Application Support/Florete/bin/flor",
      configFile: "/tmp/m 1/Library/Application Support/Florete/etc/flor.yaml",
      unit: "/tmp/m 1/Library/LaunchDaemons/dev.florete.flor.plist",
    }],
    ["windows", "D:\\n1", {
      binary: "D:\\n1\\ProgramData\\Florete\\bin\\flor.exe",
      configFile: "D:\\n1\\ProgramData\\Florete\\etc\\flor.yaml",
      unit: undefined,
    }],
    ["windows", "D:\\", {
      binary: "D:\\ProgramData\\Florete\\bin\\flor.exe",
      configFile: "D:\\ProgramData\\Florete\\etc\\flor.yaml",
      unit: undefined,
    }],
  ];
  for (const [os, prefix, want] of cases) {
    const paths = nodePaths(os, prefix);
    assert.deepEqual(
      { binary: paths.binary, configFile: paths.configFile, unit: paths.unit },
      want,
      `${os} ${prefix}`,
    );
    const real = nodePaths(os);
    for (const key of Object.keys(real) as (keyof typeof real)[]) {
      assert.notEqual(paths[key], real[key], `${os} ${prefix}: ${key} was not relocated`);
    }
  }
});

Deno.test("platform: a relative prefix is refused", () => {
  assert.throws(() => nodePaths("linux", "tmp/n1"), /prefix "tmp\/n1" must be an absolute path/);
  assert.throws(() => nodePaths("darwin", "./n1"), /must be an absolute path/);
  assert.throws(() => nodePaths("windows", "n1"), /must be an absolute Windows path/);
  // Rooted but driveless: where it lands depends on the current drive.
  assert.throws(() => nodePaths("windows", "\\n1"), /must be an absolute Windows path/);
});

Deno.test("platform: user config dir per OS", () => {
  assert.equal(
    userConfigDir("linux", { XDG_CONFIG_HOME: "/home/al/.cfg", HOME: "/home/al" }),
    "/home/al/.cfg/florete",
  );
  assert.equal(userConfigDir("linux", { HOME: "/home/al" }), "/home/al/.config/florete");
  // The XDG spec says an empty or relative XDG_CONFIG_HOME is ignored.
  assert.equal(
    userConfigDir("linux", { XDG_CONFIG_HOME: "", HOME: "/home/al" }),
    "/home/al/.config/florete",
  );
  assert.equal(
    userConfigDir("linux", { XDG_CONFIG_HOME: "cfg", HOME: "/home/al" }),
    "/home/al/.config/florete",
  );
  assert.equal(
    userConfigDir("darwin", { HOME: "/Users/al", XDG_CONFIG_HOME: "/elsewhere" }),
    "/Users/al/Library/Application Support/Florete",
  );
  assert.equal(
    userConfigDir("windows", { APPDATA: "C:\\Users\\al\\AppData\\Roaming" }),
    "C:\\Users\\al\\AppData\\Roaming\\Florete",
  );
});

Deno.test("platform: user config dir names the missing variable", () => {
  assert.throws(() => userConfigDir("linux", {}), /environment variable HOME is not set/);
  assert.throws(() => userConfigDir("linux", { HOME: "" }), /HOME is not set/);
  assert.throws(() => userConfigDir("darwin", {}), /HOME is not set/);
  assert.throws(
    () => userConfigDir("windows", { HOME: "C:\\Users\\al" }),
    /environment variable APPDATA is not set/,
  );
});

Deno.test("platform: the user's service on each OS", () => {
  const linux = userService("linux", { HOME: "/home/alice" });
  assert.equal(linux.kind, "systemd-user");
  assert.equal(linux.file, "/home/alice/.config/systemd/user/flor.service");
  assert.deepEqual(linux.install, [
    ["systemctl", "--user", "daemon-reload"],
    ["systemctl", "--user", "enable", "--now", "flor.service"],
  ]);
  assert.deepEqual(linux.uninstall, [["systemctl", "--user", "disable", "--now", "flor.service"]]);
  assert.equal(
    userService("linux", { HOME: "/home/alice", XDG_CONFIG_HOME: "/cfg" }).file,
    "/cfg/systemd/user/flor.service",
  );

  const mac = userService("darwin", { HOME: "/Users/alice" }, 501);
  assert.equal(mac.file, "/Users/alice/Library/LaunchAgents/dev.florete.flor.plist");
  assert.deepEqual(mac.install, [["launchctl", "bootstrap", "gui/501", mac.file]]);
  assert.deepEqual(mac.uninstall, [["launchctl", "bootout", "gui/501/dev.florete.flor"]]);
  assert.throws(() => userService("darwin", { HOME: "/Users/alice" }), /user id/);

  const win = userService("windows", { APPDATA: "C:\\Users\\alice\\AppData\\Roaming" });
  assert.equal(win.file, "C:\\Users\\alice\\AppData\\Roaming\\Florete\\flor-logon-task.xml");
  assert.deepEqual(win.install[0], [
    "schtasks",
    "/Create",
    "/TN",
    "\\Florete\\flor",
    "/XML",
    win.file,
    "/F",
  ]);
  assert.deepEqual(win.uninstall.at(-1), ["schtasks", "/Delete", "/TN", "\\Florete\\flor", "/F"]);
  assert.throws(() => userService("linux", {}), /HOME is not set/);
});

Deno.test("platform: agentCommand finds the launcher, the compiled binary or the source", () => {
  assert.deepEqual(
    agentCommand({
      os: "linux",
      execPath: "/opt/florete-0.1.0-linux-x64/runtime/deno",
      mainPath: "/opt/florete-0.1.0-linux-x64/lib/flor.js",
    }),
    ["/opt/florete-0.1.0-linux-x64/flor"],
  );
  assert.deepEqual(
    agentCommand({
      os: "windows",
      execPath: "C:\\florete\\runtime\\deno.exe",
      mainPath: "C:\\florete\\lib\\flor.js",
    }),
    ["C:\\florete\\flor.cmd"],
  );
  assert.deepEqual(
    agentCommand({ os: "darwin", execPath: "/usr/local/bin/flor", mainPath: "/x/main.ts" }),
    ["/usr/local/bin/flor"],
  );
  assert.deepEqual(
    agentCommand({
      os: "linux",
      execPath: "/usr/bin/deno",
      mainPath: "/src/agent/main.ts",
      denoConfig: "/src/deno.json",
    }),
    [
      "/usr/bin/deno",
      "run",
      "--allow-all",
      "--v8-flags=--expose-gc,--max-semi-space-size=1",
      "--config",
      "/src/deno.json",
      "/src/agent/main.ts",
    ],
  );
  // deno running some other file with no deno.json: refuse rather than guess.
  assert.throws(
    () => agentCommand({ os: "linux", execPath: "/usr/bin/deno", mainPath: "/tmp/flor.js" }),
    /cannot tell how to start flor again/,
  );
});

Deno.test("platform: join and leave run only the programs release launchers allow them", () => {
  const env = { HOME: "/home/a", APPDATA: "C:\\Users\\a\\AppData\\Roaming" };
  for (const os of ["linux", "darwin", "windows"] as const) {
    const s = userService(os, env, 501);
    const used = new Set(
      [...s.install, ...s.uninstall, ...s.afterRemove, stopProcessCommand(os, 42)].map((c) => c[0]),
    );
    assert.deepEqual([...used].sort(), [...USER_SERVICE_PROGRAMS[os]].sort(), os);
  }
  assert.deepEqual(stopProcessCommand("linux", 42), ["kill", "-TERM", "42"]);
});

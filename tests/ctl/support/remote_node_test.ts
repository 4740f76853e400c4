/**
 * The scripts florctl sends over SSH, run for real by a local `sh -s` in a temporary
 * directory: the same shell and coreutils a node has, without sshd.
 */
import assert from "node:assert/strict";
import { DEFAULT_UDP_BUFFER_BYTES, sysctlDropIn } from "../../../lib/udp_buffer.ts";
import { sha256Hex } from "../../../lib/sha256.ts";
import { join } from "node:path";
import fc from "fast-check";
import type { BundleFile } from "../../../ctl/support/bundle_files.ts";
import { CtlError } from "../../../ctl/support/ctl_error.ts";
import {
  type Action,
  changedFiles,
  controlScript,
  defaultInit,
  hashScript,
  type Init,
  installedFiles,
  keptPaths,
  parseHashes,
  type RemoteFile,
  writeScript,
} from "../../../ctl/support/remote_node.ts";
import { launchdPlist, systemdUnit } from "../../../lib/service_unit.ts";
import { type RunResult, runToEnd } from "../../e2e/harness.ts";
import { shellQuote } from "../../../ctl/support/ssh.ts";
import { type NodePaths, nodePaths } from "../../../lib/platform.ts";

const MARKER = "FLORETE_EOF";

/** Feeds the script to `sh -s` on stdin, as sshScript does on the node. */
function runSh(script: string): Promise<RunResult> {
  return runToEnd("sh", ["-s"], { stdin: script });
}

async function runShOk(script: string): Promise<string> {
  const r = await runSh(script);
  assert.equal(r.code, 0, `sh -s exited ${r.code}:\n${r.stderr}\nscript:\n${script}`);
  return r.stdout;
}

async function mode(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

/** Every file under dir, relative, sorted. */
async function walk(dir: string, base = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(join(dir, base))) {
    const rel = base ? `${base}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await walk(dir, rel));
    else out.push(rel);
  }
  return out.sort();
}

/** Reads bytes and decodes strictly, so equal strings mean equal bytes. */
async function readExact(path: string): Promise<string> {
  return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
    .decode(await Deno.readFile(path));
}

async function withTempDir(fn: (root: string) => Promise<void>, prefix = "florete-remote-") {
  const root = await Deno.makeTempDir({ prefix });
  try {
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

const file = (configDir: string, rel: string, data: string, secret = false): RemoteFile => ({
  path: join(configDir, rel),
  data,
  mode: secret ? 0o600 : 0o644,
});

// ---- writeScript ----

Deno.test("remote_node: writeScript writes exact bytes, file modes and 0700 secret dirs", async () => {
  await withTempDir(async (root) => {
    const configDir = join(root, "etc", "florete");
    const files = [
      file(configDir, "flor.yaml", "# nœud: «n1» ✓ 🌸 日本語\nnode: n1\n"),
      file(configDir, "ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
      file(configDir, "certs/node-n1.crt", "no trailing newline"),
      file(configDir, "certs/empty.crt", ""),
      file(configDir, "keys/node-n1.key", "-----BEGIN PRIVATE KEY-----\nk\n", true),
      file(configDir, "secrets/service-web.password", "s3cr3t'\"$x`\\\n", true),
      file(configDir, "cluster.yaml", "x".repeat(10_000) + "\n\n\r\n\t"),
    ];
    const keep = files.map((f) => f.path.slice(configDir.length + 1)).filter((p) =>
      /^(certs|keys|secrets)\//.test(p)
    );
    await runShOk(writeScript(files, configDir, keep));
    for (const f of files) {
      assert.equal(await readExact(f.path), f.data, f.path);
      assert.equal(await mode(f.path), f.mode, `mode of ${f.path}`);
    }
    assert.equal(await mode(join(configDir, "certs")), 0o755);
    assert.equal(await mode(join(configDir, "keys")), 0o700);
    assert.equal(await mode(join(configDir, "secrets")), 0o700);
    // Temp files were renamed into place, none left behind.
    assert.deepEqual(await walk(configDir), [
      "ca.crt",
      "certs/empty.crt",
      "certs/node-n1.crt",
      "cluster.yaml",
      "flor.yaml",
      "keys/node-n1.key",
      "secrets/service-web.password",
    ]);
  });
});

Deno.test("remote_node: file data cannot end the heredoc early (it travels as base64)", async () => {
  await withTempDir(async (root) => {
    const configDir = join(root, "etc");
    const pwned = join(root, "pwned");
    const attack = `line\n${MARKER}\ntouch ${pwned}\n${MARKER}\necho also > ${pwned}\n`;
    const files = [
      file(configDir, "flor.yaml", attack),
      file(configDir, "certs/exact.crt", MARKER),
      file(configDir, "certs/exact-nl.crt", `${MARKER}\n`),
      file(configDir, "keys/k.key", `\n${MARKER}\n\n`, true),
    ];
    const script = writeScript(files, configDir, [
      "certs/exact.crt",
      "certs/exact-nl.crt",
      "keys/k.key",
    ]);
    const lines = script.split("\n");
    // The marker appears only as the terminator of each file's heredoc...
    assert.equal(lines.filter((l) => l === MARKER).length, files.length);
    // ...and every line of heredoc data is base64, whose alphabet has no "_": it can never
    // spell the marker, whatever the file holds.
    let inBody = false;
    for (const l of lines) {
      if (l.endsWith(`<<'${MARKER}'`)) inBody = true;
      else if (l === MARKER) inBody = false;
      else if (inBody) assert.match(l, /^[A-Za-z0-9+/=]{1,76}$/);
    }
    assert.equal(inBody, false);
    await runShOk(script);
    for (const f of files) assert.equal(await readExact(f.path), f.data);
    await assert.rejects(Deno.stat(pwned), Deno.errors.NotFound);
  });
});

Deno.test("remote_node: writeScript round trips any file content (fast-check)", async () => {
  await withTempDir(async (root) => {
    const content = fc.oneof(
      fc.string({ unit: "binary", maxLength: 300 }),
      fc.array(fc.constantFrom(MARKER, "\n", "'", "$(id)", "`", "\\", "EOF", "é"), {
        maxLength: 30,
      }).map((parts) => parts.join("")),
    );
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(content, { minLength: 1, maxLength: 4 }), async (datas) => {
        const configDir = join(root, `c${run++}`);
        const files = datas.map((d, i) => file(configDir, `certs/f${i}.crt`, d));
        await runShOk(writeScript(files, configDir, files.map((_, i) => `certs/f${i}.crt`)));
        for (const f of files) assert.equal(await readExact(f.path), f.data);
      }),
      { numRuns: 40 },
    );
  });
});

Deno.test("remote_node: writeScript removes stale certs, keys and secrets, keeps the rest", async () => {
  await withTempDir(async (root) => {
    const configDir = join(root, "etc");
    for (const d of ["certs/sub", "keys", "secrets"]) {
      await Deno.mkdir(join(configDir, d), { recursive: true });
    }
    const old = {
      "certs/old.crt": "old",
      "certs/old file.crt": "old, with a space",
      "certs/kept.crt": "kept though not rewritten",
      "certs/node-n1.crt": "stale content",
      "certs/sub/inner.crt": "not a file of certs/ itself",
      "keys/old.key": "old key",
      "keys/node-n1.key": "stale key, too open",
      "secrets/old.password": "old password",
      "notes.txt": "outside the managed directories",
      "flor.yaml": "old flor.yaml",
    };
    for (const [rel, data] of Object.entries(old)) {
      await Deno.writeTextFile(join(configDir, rel), data, { mode: 0o644 });
    }
    const files = [
      file(configDir, "certs/node-n1.crt", "new cert\n"),
      file(configDir, "keys/node-n1.key", "new key\n", true),
    ];
    await runShOk(
      writeScript(files, configDir, ["certs/node-n1.crt", "keys/node-n1.key", "certs/kept.crt"]),
    );
    assert.deepEqual(await walk(configDir), [
      "certs/kept.crt",
      "certs/node-n1.crt",
      "certs/sub/inner.crt",
      "flor.yaml",
      "keys/node-n1.key",
      "notes.txt",
    ]);
    assert.equal(await readExact(join(configDir, "certs/node-n1.crt")), "new cert\n");
    assert.equal(await readExact(join(configDir, "keys/node-n1.key")), "new key\n");
    // Replaced, not rewritten in place: the old 0644 is gone with the old inode.
    assert.equal(await mode(join(configDir, "keys/node-n1.key")), 0o600);
    assert.equal(await readExact(join(configDir, "certs/kept.crt")), "kept though not rewritten");
    assert.equal(await readExact(join(configDir, "flor.yaml")), "old flor.yaml");

    // Nothing to write and nothing to keep empties the three directories.
    await runShOk(writeScript([], configDir, []));
    assert.deepEqual(await walk(configDir), ["certs/sub/inner.crt", "flor.yaml", "notes.txt"]);
  });
});

Deno.test("remote_node: writeScript works under a path with spaces, quotes and $", async () => {
  await withTempDir(async (root) => {
    const configDir = join(root, `it's a "node" dir $HOME \`id\` \\ ;`, "etc florete");
    await Deno.mkdir(join(configDir, "certs"), { recursive: true });
    await Deno.writeTextFile(join(configDir, "certs", "stale.crt"), "stale");
    await Deno.writeTextFile(join(configDir, "certs", "kept 'one'.crt"), "kept");
    const files = [
      file(configDir, "flor.yaml", "node: n1\n"),
      file(configDir, "keys/node-n1.key", "key\n", true),
    ];
    await runShOk(writeScript(files, configDir, ["keys/node-n1.key", "certs/kept 'one'.crt"]));
    for (const f of files) {
      assert.equal(await readExact(f.path), f.data);
      assert.equal(await mode(f.path), f.mode);
    }
    assert.deepEqual(await listDir(join(configDir, "certs")), ["kept 'one'.crt"]);
    assert.equal(await mode(join(configDir, "keys")), 0o700);
  }, "florete remote ");
});

// ---- hashScript, parseHashes, sha256Hex ----

async function subtleHex(data: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("remote_node: sha256Hex is SHA-256 of the UTF-8 bytes", async () => {
  assert.equal(
    await sha256Hex(""),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
  assert.equal(
    await sha256Hex("abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(await sha256Hex(new Uint8Array([0x61, 0x62, 0x63])), await sha256Hex("abc"));
  const s = "héllo ✓ 🌸";
  assert.equal(await sha256Hex(s), await subtleHex(new TextEncoder().encode(s)));
});

Deno.test("remote_node: hashScript reports existing files' SHA-256, skips missing ones", async () => {
  await withTempDir(async (root) => {
    const dir = join(root, "with space 'and quote'");
    await Deno.mkdir(join(dir, "a dir"), { recursive: true });
    const contents: Record<string, Uint8Array> = {
      [join(dir, "flor.yaml")]: new TextEncoder().encode("node: n1 ✓\n"),
      [join(dir, "empty")]: new Uint8Array(),
      [join(dir, "binary $x")]: Uint8Array.from({ length: 4096 }, (_, i) => (i * 7) & 0xff),
    };
    for (const [p, data] of Object.entries(contents)) await Deno.writeFile(p, data);
    const missing = [join(dir, "missing.crt"), join(root, "no-dir", "x"), join(dir, "a dir")];
    const out = await runShOk(hashScript([...Object.keys(contents), ...missing]));
    const got = parseHashes(out);
    const want = new Map<string, string>();
    for (const [p, data] of Object.entries(contents)) want.set(p, await subtleHex(data));
    assert.deepEqual(got, want);
    for (const [p, data] of Object.entries(contents)) {
      assert.equal(got.get(p), await sha256Hex(data), p);
    }
  });
});

Deno.test("remote_node: hashScript of nothing that exists prints nothing and succeeds", async () => {
  const r = await runSh(hashScript(["/nonexistent/florete/a", "/nonexistent/florete/b"]));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "");
  assert.deepEqual(parseHashes(r.stdout), new Map());
});

Deno.test("remote_node: parseHashes reads sha256sum and shasum lines, ignores the rest", () => {
  const h1 = "a".repeat(64);
  const h2 = "0123456789abcdef".repeat(4);
  const out = [
    `${h1}  /etc/florete/flor.yaml`,
    `${h2} */opt/florete/bin/flor`, // binary-mode marker
    `${h1}  /path with spaces/x\r`,
    "sha256sum: /etc/florete/gone: No such file or directory",
    `${h1.slice(1)}  /short/hash`,
    `${h1.toUpperCase()}  /upper/case`,
    "",
  ].join("\n");
  assert.deepEqual(
    parseHashes(out),
    new Map([
      ["/etc/florete/flor.yaml", h1],
      ["/opt/florete/bin/flor", h2],
      ["/path with spaces/x", h1],
    ]),
  );
});

// Regression: names that GNU sha256sum escapes (a "\\" or newline in them) or that end in a
// space were reported absent, so every deploy rewrote them and restarted the agent.
Deno.test({
  name: "remote_node: hashScript finds files whose names sha256sum escapes or end in a space",
  async fn() {
    await withTempDir(async (root) => {
      const paths = [join(root, "back\\slash"), join(root, "new\nline"), join(root, "trail ")];
      for (const p of paths) await Deno.writeTextFile(p, "x");
      const got = parseHashes(await runShOk(hashScript(paths)));
      for (const p of paths) assert.equal(got.get(p), await sha256Hex("x"), JSON.stringify(p));
    });
  },
});

// ---- installedFiles ----

Deno.test("remote_node: the sysctl drop-in matches the golden file", async () => {
  const golden = new URL("../../lib/golden/60-florete.conf", import.meta.url);
  const actual = sysctlDropIn(DEFAULT_UDP_BUFFER_BYTES);
  if (Deno.env.get("UPDATE_GOLDEN") === "1") await Deno.writeTextFile(golden, actual);
  assert.equal(
    actual,
    await Deno.readTextFile(golden),
    "differs from tests/lib/golden/60-florete.conf; if intended, rerun with UPDATE_GOLDEN=1",
  );
});

const BUNDLE: BundleFile[] = [
  { path: "flor.yaml", data: "node: n1\n", secret: false },
  { path: "ca.crt", data: "ca\n", secret: false },
  { path: "certs/node-n1.crt", data: "cert\n", secret: false },
  { path: "keys/node-n1.key", data: "key\n", secret: true },
  { path: "secrets/service-web.password", data: "pw\n", secret: true },
];

Deno.test("remote_node: installedFiles puts the bundle under the prefix, secrets 0600", () => {
  const prefix = "/tmp/host n1";
  const { paths, files } = installedFiles("linux", prefix, "none", BUNDLE);
  assert.deepEqual(paths, nodePaths("linux", prefix));
  assert.equal(paths.config, "/tmp/host n1/etc/florete");
  assert.deepEqual(files, [
    { path: "/tmp/host n1/etc/florete/flor.yaml", data: "node: n1\n", mode: 0o644 },
    { path: "/tmp/host n1/etc/florete/ca.crt", data: "ca\n", mode: 0o644 },
    { path: "/tmp/host n1/etc/florete/certs/node-n1.crt", data: "cert\n", mode: 0o644 },
    { path: "/tmp/host n1/etc/florete/keys/node-n1.key", data: "key\n", mode: 0o600 },
    {
      path: "/tmp/host n1/etc/florete/secrets/service-web.password",
      data: "pw\n",
      mode: 0o600,
    },
  ]);
  // The real layout without a prefix.
  const real = installedFiles("linux", "/", "none", BUNDLE);
  assert.equal(real.files[0].path, "/etc/florete/flor.yaml");
  assert.equal(real.files.length, BUNDLE.length);
});

Deno.test("remote_node: installedFiles adds the systemd unit or launchd plist, none for none", () => {
  const prefix = "/srv/n1";
  const sys = installedFiles("linux", prefix, "systemd", BUNDLE);
  assert.equal(sys.files.length, BUNDLE.length + 2);
  const unit = sys.files.at(-2)!;
  assert.equal(unit.path, "/srv/n1/etc/systemd/system/flor.service");
  assert.equal(unit.mode, 0o644);
  const spec = {
    binary: sys.paths.binary,
    configFile: sys.paths.configFile,
    stateDir: sys.paths.state,
    logFile: sys.paths.log,
    lowPort: false,
  };
  assert.equal(unit.data, systemdUnit(spec));
  assert.match(unit.data, /^ExecStart=\/srv\/n1\/opt\/florete\/bin\/flor run --config /m);
  const sysctl = sys.files.at(-1)!;
  assert.equal(sysctl.path, "/srv/n1/etc/sysctl.d/60-florete.conf");
  assert.equal(sysctl.mode, 0o644);
  assert.equal(sysctl.data, sysctlDropIn(DEFAULT_UDP_BUFFER_BYTES));

  const mac = installedFiles("darwin", prefix, "launchd", BUNDLE);
  const plist = mac.files.at(-1)!;
  assert.equal(plist.path, "/srv/n1/Library/LaunchDaemons/dev.florete.flor.plist");
  assert.equal(plist.mode, 0o644);
  assert.equal(
    plist.data,
    launchdPlist({
      binary: mac.paths.binary,
      configFile: mac.paths.configFile,
      stateDir: mac.paths.state,
      logFile: mac.paths.log,
      lowPort: false,
    }),
  );
  assert.equal(mac.files[0].path, "/srv/n1/Library/Application Support/Florete/etc/flor.yaml");

  for (const os of ["linux", "darwin"] as const) {
    const none = installedFiles(os, prefix, "none", BUNDLE);
    assert.equal(none.files.length, BUNDLE.length);
    assert.ok(none.files.every((f) => !f.path.endsWith(".service") && !f.path.endsWith(".plist")));
    assert.ok(none.files.every((f) => f.path.startsWith(`${prefix}/`)));
  }
});

Deno.test("remote_node: defaultInit per OS, Windows refused with what to do instead", () => {
  assert.equal(defaultInit("linux"), "systemd");
  assert.equal(defaultInit("darwin"), "launchd");
  assert.throws(() => defaultInit("windows"), (e) => {
    assert.ok(e instanceof CtlError);
    assert.match(e.message, /Windows nodes over SSH is not supported yet/);
    assert.match(e.message, /sc\.exe/);
    return true;
  });
});

// ---- controlScript ----

Deno.test("remote_node: controlScript for systemd uses systemctl per action", () => {
  const paths = nodePaths("linux");
  const lines = (a: Action) => controlScript("systemd", paths, a).trim().split("\n");
  const common = [
    "set -eu",
    `sysctl -q -p '${paths.sysctl}' >/dev/null 2>&1 || echo "florete: could not apply '${paths.sysctl}'" >&2`,
    "systemctl daemon-reload",
    "systemctl enable --quiet flor.service",
  ];
  assert.deepEqual(lines("reload"), [...common, "systemctl reload-or-restart flor.service"]);
  assert.deepEqual(lines("restart"), [...common, "systemctl restart flor.service"]);
  assert.deepEqual(lines("ensure-running"), [...common, "systemctl start flor.service"]);
});

Deno.test("remote_node: controlScript for launchd uses launchctl per action", () => {
  const paths = nodePaths("darwin");
  const unit = "'/Library/LaunchDaemons/dev.florete.flor.plist'";
  const reload = controlScript("launchd", paths, "reload");
  assert.match(reload, /^set -eu\n/);
  assert.ok(reload.includes("mkdir -p '/Library/Logs/Florete'"), reload);
  assert.ok(reload.includes("launchctl kill HUP system/dev.florete.flor"), reload);
  assert.ok(!reload.includes("bootstrap"), reload);
  const restart = controlScript("launchd", paths, "restart");
  assert.ok(restart.includes(`launchctl bootout system ${unit} 2>/dev/null || true`), restart);
  assert.ok(restart.includes(`launchctl bootstrap system ${unit}`), restart);
  const ensure = controlScript("launchd", paths, "ensure-running");
  assert.ok(
    ensure.includes(
      `launchctl print system/dev.florete.flor >/dev/null 2>&1 || launchctl bootstrap system ${unit}`,
    ),
    ensure,
  );
  assert.ok(!ensure.includes("bootout"), ensure);
});

Deno.test("remote_node: every generated script is valid POSIX sh (sh -n)", async () => {
  const inits: [Init, NodePaths][] = [
    ["systemd", nodePaths("linux", "/tmp/a b")],
    ["launchd", nodePaths("darwin", "/tmp/it's")],
    ["none", nodePaths("linux", '/tmp/"q" $x')],
  ];
  const scripts = [
    hashScript(["/a b/c", "/it's"]),
    writeScript([{ path: "/x y/flor.yaml", data: "é", mode: 0o644 }], "/x y", ["certs/a b"]),
  ];
  for (const [init, paths] of inits) {
    for (const a of ["ensure-running", "restart", "reload"] as const) {
      scripts.push(controlScript(init, paths, a));
    }
  }
  for (const s of scripts) {
    const out = await new Deno.Command("sh", {
      args: ["-n", "-c", s],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, `${new TextDecoder().decode(out.stderr)}\n${s}`);
  }
});

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces). */
async function procStat(pid: number): Promise<{ state: string; session: number } | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // Field 3 is the state, field 6 the session id (proc(5)); rest[0] is field 3.
  return { state: rest[0], session: Number(rest[3]) };
}

/** A zombie counts as gone: an orphan's parent is PID 1, and in some containers PID 1 never
 * reaps, so a killed agent stays a zombie (kill -0 still succeeds on it). */
async function running(pid: number): Promise<boolean> {
  const s = await procStat(pid);
  return s !== undefined && s.state !== "Z" && s.state !== "X";
}

async function waitUntil(what: string, cond: () => Promise<boolean>, timeoutMs = 5000) {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function readOr(path: string, fallback = ""): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return fallback;
  }
}

/** A stand-in agent: records each start (pid, cwd, args), appends "reloaded" on HUP. */
function fakeAgent(starts: string, reloads: string): string {
  return [
    "#!/bin/sh",
    `starts=${shellQuote(starts)}`,
    `reloads=${shellQuote(reloads)}`,
    `echo "$$ $PWD $*" >> "$starts"`,
    `echo "agent $$ up"`,
    `trap 'echo reloaded >> "$reloads"' HUP`,
    "while :; do sleep 0.1; done",
    "",
  ].join("\n");
}

Deno.test("remote_node: controlScript none starts once, reloads with HUP, restarts", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "florete control " });
  const paths = nodePaths("linux", join(root, "host n1"));
  const starts = join(root, "starts.log");
  const reloads = join(root, "reloads.log");
  await Deno.mkdir(paths.bin, { recursive: true });
  await Deno.writeTextFile(paths.binary, fakeAgent(starts, reloads));
  await Deno.chmod(paths.binary, 0o755);
  const seen = new Set<number>();
  const pidNow = async () => {
    const pid = Number((await readOr(paths.pidFile)).trim());
    if (pid > 0) seen.add(pid);
    return pid;
  };
  const startLines = async () => (await readOr(starts)).split("\n").filter((l) => l);
  const control = (a: Action) => runShOk(controlScript("none", paths, a));
  try {
    let pid = 0;
    await t.step("ensure-running starts the agent detached, with a pid file", async () => {
      await control("ensure-running");
      pid = await pidNow();
      assert.ok(pid > 0, "pid file written");
      await waitUntil("the agent to record its start", async () => (await startLines()).length > 0);
      // The pid file holds the agent itself (setsid did not fork), run with its config,
      // from the state directory.
      assert.deepEqual(await startLines(), [
        `${pid} ${paths.state} run --config ${paths.configFile}`,
      ]);
      await waitUntil(
        "the agent's stdout in the log",
        async () => (await readOr(paths.log)).includes(`agent ${pid} up`),
      );
      // The script's shell has exited (runSh returned); the agent lives on in its own session.
      const agent = (await procStat(pid))!;
      const mine = (await procStat(Deno.pid))!;
      assert.notEqual(agent.session, mine.session);
      assert.equal(agent.session, pid, "setsid made the agent a session leader");
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(await running(pid), "agent still running after the script's shell exited");
    });

    await t.step("a second ensure-running leaves the running agent alone", async () => {
      await control("ensure-running");
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await pidNow(), pid);
      assert.equal((await startLines()).length, 1, "no second agent started");
      assert.ok(await running(pid));
    });

    await t.step("reload sends HUP and keeps the pid", async () => {
      assert.equal(await readOr(reloads), "");
      await control("reload");
      await waitUntil("the agent to handle HUP", async () => (await readOr(reloads)) !== "");
      assert.equal(await readOr(reloads), "reloaded\n");
      assert.equal(await pidNow(), pid);
      assert.ok(await running(pid));
      assert.equal((await startLines()).length, 1);
    });

    await t.step("restart stops the old agent and starts a new one", async () => {
      // If nothing reaps the old agent (an orphan under a PID 1 that never waits), kill -0
      // still sees its zombie and stop() waits out its 5 s grace before SIGKILL.
      await control("restart");
      const fresh = await pidNow();
      assert.notEqual(fresh, pid);
      assert.equal(await running(pid), false, "old agent stopped");
      assert.ok(await running(fresh), "new agent running");
      await waitUntil(
        "the new agent to record its start",
        async () => (await startLines()).length === 2,
      );
      assert.match((await startLines())[1], new RegExp(`^${fresh} `));
      assert.notEqual((await procStat(fresh))!.session, (await procStat(Deno.pid))!.session);
    });
  } finally {
    await pidNow();
    for (const line of await startLines()) seen.add(Number(line.split(" ")[0]));
    for (const pid of seen) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});

Deno.test("remote_node: controlScript none reload with no agent running starts one", async () => {
  const root = await Deno.makeTempDir({ prefix: "florete-control-" });
  const paths = nodePaths("linux", root);
  const starts = join(root, "starts.log");
  const reloads = join(root, "reloads.log");
  await Deno.mkdir(paths.bin, { recursive: true });
  await Deno.writeTextFile(paths.binary, fakeAgent(starts, reloads), { mode: 0o755 });
  await Deno.chmod(paths.binary, 0o755);
  let pid = 0;
  try {
    await runShOk(controlScript("none", paths, "reload"));
    pid = Number((await Deno.readTextFile(paths.pidFile)).trim());
    await waitUntil("the agent to start", async () => (await readOr(starts)) !== "");
    assert.ok(await running(pid));
    assert.equal(await readOr(reloads), "", "a fresh start is not sent HUP");
  } finally {
    for (const line of (await readOr(starts)).split("\n").filter((l) => l)) {
      pid = Number(line.split(" ")[0]) || pid;
    }
    if (pid > 0) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});

Deno.test("remote node: only files missing on the node or with another hash are changed", async () => {
  const file = (path: string, data: string): RemoteFile => ({ path, data, mode: 0o644 });
  const same = file("/etc/florete/ca.crt", "ca");
  const edited = file("/etc/florete/cluster.yaml", "new map");
  const missing = file("/etc/florete/flor.yaml", "config");
  const installed = new Map([
    [same.path, await sha256Hex("ca")],
    [edited.path, await sha256Hex("old map")],
  ]);
  assert.deepEqual(await changedFiles([same, edited, missing], installed), [edited, missing]);
  assert.deepEqual(await changedFiles([same], installed), []);
});

Deno.test("remote node: writeScript keeps the bundle's certs, keys and secrets only", () => {
  const f = (path: string): BundleFile => ({ path, data: "", secret: false });
  assert.deepEqual(
    keptPaths([
      f("flor.yaml"),
      f("certs/node-n1.crt"),
      f("keys/node-n1.key"),
      f("secrets/service-web.password"),
      f("cluster.yaml"),
      f("certsx/other"),
    ]),
    ["certs/node-n1.crt", "keys/node-n1.key", "secrets/service-web.password"],
  );
});

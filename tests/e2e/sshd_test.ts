import assert from "node:assert/strict";
import { join } from "node:path";
import { runToEnd } from "./harness.ts";
import { startSshd } from "./sshd.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test(
  "sshd: run returns the remote command's output over a reused connection",
  opts,
  async () => {
    const s = await startSshd();
    try {
      const r = await s.run("echo hi");
      assert.deepEqual(r, { code: 0, stdout: "hi\n", stderr: "" });
      assert.equal((await s.run("id -un")).stdout, "root\n");
      assert.equal((await s.run("exit 7")).code, 7);
      // The startup probe left a ControlMaster behind for later commands to reuse.
      const check = await runToEnd("ssh", ["-F", s.config, "-O", "check", s.host]);
      assert.equal(check.code, 0, check.stderr);
    } finally {
      await s.stop();
    }
  },
);

Deno.test("sshd: scp -F config copies a file to the remote", opts, async () => {
  const s = await startSshd();
  try {
    const local = join(s.dir, "local.txt");
    const remote = join(s.dir, "remote-host", "copied.txt");
    await Deno.writeTextFile(local, "payload\n");
    assert.equal((await s.run(`mkdir -p ${join(s.dir, "remote-host")}`)).code, 0);
    const r = await runToEnd("scp", ["-F", s.config, local, `${s.host}:${remote}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await s.run(`cat ${remote}`)).stdout, "payload\n");
  } finally {
    await s.stop();
  }
});

Deno.test("sshd: a mismatched host key fails verification", opts, async () => {
  const s = await startSshd({ hostKeyMismatch: true });
  try {
    const r = await s.run("echo should-not-run");
    assert.equal(r.code, 255);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /Host key verification failed/);
    const cp = await runToEnd("scp", ["-F", s.config, s.config, `${s.host}:${join(s.dir, "x")}`]);
    assert.notEqual(cp.code, 0);
    assert.match(cp.stderr, /Host key verification failed/);
  } finally {
    await s.stop();
  }
});

Deno.test("sshd: password and keyboard-interactive auth are refused", opts, async () => {
  const s = await startSshd();
  try {
    const r = await runToEnd("ssh", [
      "-F",
      s.config,
      // A multiplexed session would ride the master's key auth and never ask the server.
      "-o",
      "ControlPath=none",
      "-o",
      "PreferredAuthentications=password,keyboard-interactive",
      "-o",
      "PubkeyAuthentication=no",
      s.host,
      "--",
      "true",
    ]);
    assert.equal(r.code, 255);
    // The server lists what it would accept: only publickey.
    assert.match(r.stderr, /Permission denied \(publickey\)/);
  } finally {
    await s.stop();
  }
});

/** pid and start time (field 22 of /proc/<pid>/stat), or undefined if gone or a zombie. */
async function procStart(pid: number): Promise<string | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return f[0] === "Z" ? undefined : f[19];
  } catch {
    return undefined;
  }
}

async function processTable(): Promise<{ pid: number; ppid: number; cmdline: string }[]> {
  const out = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const cmdline = (await Deno.readTextFile(`/proc/${e.name}/cmdline`)).replaceAll("\0", " ");
      const stat = await Deno.readTextFile(`/proc/${e.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      out.push({ pid: Number(e.name), ppid, cmdline });
    } catch {
      // exited while we looked
    }
  }
  return out;
}

Deno.test("sshd: stop leaves no sshd or ssh process behind and removes the dir", opts, async () => {
  const s = await startSshd();
  let stopped = false;
  try {
    // A running remote command, so a session process exists too.
    const running = s.run("sleep 0.3; echo done");
    await new Promise((resolve) => setTimeout(resolve, 100));
    const table = await processTable();
    const listener = table.find((p) => p.cmdline.includes(join(s.dir, "sshd_config")));
    assert.ok(listener, "sshd listener not found in /proc");
    assert.ok(
      table.some((p) => p.cmdline.startsWith("ssh: ") && p.cmdline.includes(s.dir)),
      "ControlMaster not found in /proc",
    );
    assert.equal((await running).stdout, "done\n");

    const ours = new Set([listener.pid]);
    for (let grew = true; grew;) {
      grew = false;
      for (const p of table) {
        if ((ours.has(p.ppid) || p.cmdline.includes(s.dir)) && !ours.has(p.pid)) {
          ours.add(p.pid);
          grew = true;
        }
      }
    }
    assert.ok(ours.size >= 3, `expected listener, session and master: ${[...ours]}`);
    const before = new Map<number, string | undefined>();
    for (const pid of ours) before.set(pid, await procStart(pid));

    await s.stop();
    stopped = true;
    for (const [pid, start] of before) {
      const now = await procStart(pid);
      assert.ok(now === undefined || now !== start, `process ${pid} survived stop()`);
    }
    await assert.rejects(Deno.stat(s.dir), Deno.errors.NotFound);
  } finally {
    if (!stopped) await s.stop();
  }
});

Deno.test("sshd: two servers run side by side on different ports", opts, async () => {
  const [a, b] = await Promise.all([startSshd(), startSshd()]);
  try {
    assert.notEqual(a.port, b.port);
    assert.notEqual(a.dir, b.dir);
    const [ra, rb] = await Promise.all([a.run("echo a"), b.run("echo b")]);
    assert.equal(ra.stdout + rb.stdout, "a\nb\n");
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

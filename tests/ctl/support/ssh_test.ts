import assert from "node:assert/strict";
import fc from "fast-check";
import { CtlError } from "../../../ctl/support/ctl_error.ts";
import {
  formatSshTarget,
  parseSshTarget,
  shellQuote,
  sshFailure,
  type SshTarget,
} from "../../../ctl/support/ssh.ts";

/** parseSshTarget leaves absent parts as undefined keys; compare only what is set. */
function plain(t: SshTarget): SshTarget {
  const out: SshTarget = { host: t.host };
  if (t.user !== undefined) out.user = t.user;
  if (t.port !== undefined) out.port = t.port;
  return out;
}

Deno.test("ssh: targets parse into user, host and port", () => {
  const table: [string, SshTarget][] = [
    ["root@203.0.113.10:22", { user: "root", host: "203.0.113.10", port: 22 }],
    ["admin@host", { user: "admin", host: "host" }],
    ["host", { host: "host" }],
    ["host:2222", { host: "host", port: 2222 }],
    ["db.example.com:1", { host: "db.example.com", port: 1 }],
    ["h:65535", { host: "h", port: 65535 }],
    ["user@[2001:db8::1]:2222", { user: "user", host: "2001:db8::1", port: 2222 }],
    ["[::1]", { host: "::1" }],
    ["[::ffff:192.0.2.1]:22", { host: "::ffff:192.0.2.1", port: 22 }],
    // An alias from ~/.ssh/config: ssh resolves it, florctl passes it through.
    ["florete-n1", { host: "florete-n1" }],
    ["deploy@prod_box-3", { user: "deploy", host: "prod_box-3" }],
  ];
  for (const [text, want] of table) {
    assert.deepEqual(plain(parseSshTarget(text)), want, text);
  }
});

Deno.test("ssh: formatting a parsed target gives the same text back", () => {
  for (
    const text of [
      "root@203.0.113.10:22",
      "admin@host",
      "host",
      "host:2222",
      "user@[2001:db8::1]:2222",
      "[2001:db8::1]",
      "alice@[::1]",
      "florete-n1",
    ]
  ) {
    assert.equal(formatSshTarget(parseSshTarget(text)), text);
  }
});

Deno.test("ssh: format then parse round trips any target (fast-check)", () => {
  // Words never start with "-": ssh would read them as options (refused, tested below).
  const word = (chars: string) =>
    fc.string({ unit: fc.constantFrom(...chars), minLength: 1, maxLength: 20 })
      .filter((w) => !w.startsWith("-"));
  const user = word("abcdefghijklmnopqrstuvwxyzABCZ0123456789._-+");
  const name = word("abcdefghijklmnopqrstuvwxyz0123456789.-_");
  const v6 = fc.ipV6();
  const target = fc.record({
    user: fc.option(user, { nil: undefined }),
    host: fc.oneof(name, v6, fc.ipV4()),
    port: fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
  });
  fc.assert(fc.property(target, (t) => {
    const text = formatSshTarget(t);
    assert.deepEqual(plain(parseSshTarget(text)), plain(t), text);
    assert.equal(formatSshTarget(parseSshTarget(text)), text);
  }));
});

Deno.test("ssh: bad targets are refused with a message saying how to write one", () => {
  const shape = /write \[user@\]host\[:port\], e\.g\. root@203\.0\.113\.10/;
  const table: [string, RegExp][] = [
    ["", shape],
    ["   ", shape],
    ["root@my host", shape],
    [" host", shape],
    ["host ", shape],
    ["root @host", shape],
    ["@host", shape],
    ["root@", shape],
    ["a@b@c", shape],
    ["host:", shape],
    ["host:ssh", shape],
    ["host:123456", shape],
    ["host:-1", shape],
    ["2001:db8::1", shape],
    ["[2001:db8::1", shape],
    ["[fe80::1%eth0]:22", shape],
    ["host:0", /port must be 1-65535/],
    ["host:65536", /port must be 1-65535/],
    ["root@host:99999", /port must be 1-65535/],
  ];
  for (const [text, want] of table) {
    assert.throws(
      () => parseSshTarget(text),
      (e) => {
        assert.ok(e instanceof CtlError, `${JSON.stringify(text)}: ${e}`);
        assert.match(e.message, want, JSON.stringify(text));
        assert.ok(e.message.includes(`'${text}'`), `message quotes the input: ${e.message}`);
        return true;
      },
    );
  }
});

// Regression: a target starting with "-" reached ssh as an option (-oProxyCommand=... ran a
// command on the operator's machine); parseSshTarget and cluster.yaml's schema refuse it.
Deno.test({
  name: "ssh: a target that ssh would read as an option is refused",
  fn() {
    for (
      const text of [
        "-oProxyCommand=touch${IFS}/tmp/pwned",
        "-oProxyCommand=x@host",
        "-F/tmp/evil_config",
      ]
    ) {
      assert.throws(() => parseSshTarget(text), CtlError, JSON.stringify(text));
    }
  },
});

/** Runs `sh -c "printf %s <quoted>"` and returns what it printed. */
async function shPrints(quoted: string): Promise<string> {
  const out = await new Deno.Command("sh", {
    args: ["-c", `printf %s ${quoted}`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

Deno.test("ssh: shellQuote survives quotes, metacharacters and expansions", async () => {
  for (
    const s of [
      "",
      "plain",
      "it's",
      "'",
      "''",
      "'\\''",
      '"double" $HOME `id` $(id) ${x:-y}',
      "a\nb\tc\rd",
      "*?[a-z] ~ ~root",
      "; rm -rf / & | > < #",
      "\\ \\\\ \\n",
      "-n",
      "%s %d %%",
      "héllo ✓ 🌸",
      " leading and trailing ",
    ]
  ) {
    assert.equal(await shPrints(shellQuote(s)), s, JSON.stringify(s));
  }
});

Deno.test("ssh: sh prints any shellQuoted string back exactly (fast-check)", async () => {
  // Full Unicode code points (no lone surrogates, which UTF-8 cannot carry); NUL cannot be in
  // a process argument at all.
  const text = fc.oneof(
    fc.string({ unit: "binary", maxLength: 40 }),
    fc.string({ unit: fc.constantFrom("'", '"', "\\", "$", "`", "\n", " ", "a"), maxLength: 20 }),
  ).filter((s) => !s.includes("\0"));
  await fc.assert(
    fc.asyncProperty(text, async (s) => {
      assert.equal(await shPrints(shellQuote(s)), s);
    }),
    { numRuns: 200 },
  );
});

Deno.test("ssh: exit 255 with a host key failure explains known_hosts, never bypasses", () => {
  const t = { user: "root", host: "203.0.113.10", port: 2222 };
  for (
    const stderr of [
      "Host key verification failed.\r\n",
      "@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@\n" +
      "Host key verification failed.\n",
      "No ED25519 host key is known for [203.0.113.10]:2222 and you have requested strict " +
      "checking.\nhost key verification failed.",
    ]
  ) {
    const e = sshFailure(t, "writing the bundle", { code: 255, stdout: "", stderr });
    assert.ok(e instanceof CtlError);
    assert.match(e.message, /^root@203\.0\.113\.10:2222: host key verification failed\./);
    assert.match(e.message, /never bypasses it/);
    assert.match(e.message, /known_hosts/);
  }
});

Deno.test("ssh: exit 255 with permission denied says how to offer a key", () => {
  const e = sshFailure({ user: "root", host: "n1" }, "uname -sm", {
    code: 255,
    stdout: "",
    stderr: "root@n1: Permission denied (publickey).\n",
  });
  assert.ok(e instanceof CtlError);
  assert.equal(
    e.message,
    "root@n1: ssh login refused (root@n1: Permission denied (publickey).): load your key " +
      "into ssh-agent or set IdentityFile",
  );
});

Deno.test("ssh: any other exit 255 is a connection failure quoting ssh", () => {
  const t = { host: "2001:db8::1", port: 22 };
  const e = sshFailure(t, "uname -sm", {
    code: 255,
    stdout: "",
    stderr: "ssh: connect to host 2001:db8::1 port 22: Connection refused\n",
  });
  assert.equal(
    e.message,
    "[2001:db8::1]:22: cannot connect with ssh: ssh: connect to host 2001:db8::1 port 22: " +
      "Connection refused",
  );
  const silent = sshFailure({ host: "n1" }, "uname -sm", { code: 255, stdout: "", stderr: "" });
  assert.equal(silent.message, "n1: cannot connect with ssh: no answer");
});

Deno.test("ssh: a non-255 exit is the remote command's failure with its exit code", () => {
  const t = { user: "root", host: "n1" };
  const e = sshFailure(t, "writing the bundle", {
    code: 1,
    stdout: "",
    stderr: "mkdir: cannot create directory '/etc/florete': Permission denied\n",
  });
  assert.ok(e instanceof CtlError);
  // "Permission denied" from the remote command is not mistaken for an ssh login failure.
  assert.equal(
    e.message,
    "root@n1: writing the bundle failed (exit 1): mkdir: cannot create directory " +
      "'/etc/florete': Permission denied",
  );
  const quiet = sshFailure(t, "restart (none)", {
    code: 127,
    stdout: "sh: flor: not found\n",
    stderr: "",
  });
  assert.equal(quiet.message, "root@n1: restart (none) failed (exit 127): sh: flor: not found");
  const hostKeyText = sshFailure(t, "x", {
    code: 2,
    stdout: "",
    stderr: "Host key verification failed.",
  });
  assert.match(hostKeyText.message, /^root@n1: x failed \(exit 2\): Host key/);
});

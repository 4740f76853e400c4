import assert from "node:assert/strict";
import { parseSshTarget, SshTargetError } from "../../lib/ssh_target.ts";

// Regression (issue 11 item 10): these reached ssh(1); OpenSSH versions that expand %h into
// ProxyCommand or Match exec would have run the command in them.
Deno.test("ssh_target: shell syntax in the user or host is refused", () => {
  for (
    const text of [
      "root@$(touch${IFS}pwned)",
      "$(id)@host",
      "root@host;id",
      "root@`id`",
      "root@host|id",
      "root@host&id",
      "root@'host'",
      'root@"host"',
      "root@ho%hst",
      "ro%ot@host",
      "root@host\nid",
      "root@host\tx",
      "root@h*st",
      "root@h/st",
      "root@h\\st",
    ]
  ) {
    assert.throws(
      () => parseSshTarget(text),
      (e) => {
        assert.ok(e instanceof SshTargetError, `${JSON.stringify(text)}: ${e}`);
        assert.match(e.message, /write \[user@\]host\[:port\]/, JSON.stringify(text));
        return true;
      },
    );
  }
});

Deno.test("ssh_target: the message names the part and the characters allowed", () => {
  assert.throws(
    () => parseSshTarget("root@$(touch${IFS}pwned)"),
    /the host may contain only letters, digits, '\.', '-' and '_'/,
  );
  assert.throws(() => parseSshTarget("r$t@host"), /the user may contain only letters, digits/);
  assert.throws(() => parseSshTarget("-oProxyCommand=x@host"), /cannot start with '-'/);
  assert.throws(() => parseSshTarget("root@-oFoo"), /a host cannot start with '-'/);
});

Deno.test("ssh_target: the usual forms parse", () => {
  assert.deepEqual(parseSshTarget("root@203.0.113.10:22"), {
    user: "root",
    host: "203.0.113.10",
    port: 22,
  });
  assert.deepEqual(parseSshTarget("deploy@prod_box-3"), {
    user: "deploy",
    host: "prod_box-3",
    port: undefined,
  });
  assert.deepEqual(parseSshTarget("user@[2001:db8::1]:2222"), {
    user: "user",
    host: "2001:db8::1",
    port: 2222,
  });
});

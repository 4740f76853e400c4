import assert from "node:assert/strict";
import { defaultShell, type Shell, shellEnv } from "../../agent/shell_env.ts";

const input = (shell: Shell, pacUrl?: string) => ({
  shell,
  socks: { host: "127.0.0.1", port: 1080 },
  pacUrl,
  principal: "user:alice",
  cluster: "acme",
});

Deno.test("shell_env: sh output sets both spellings of ALL_PROXY when a real sh evaluates it", async () => {
  const text = shellEnv(input("sh", "http://127.0.0.1:9465/proxy.pac"));
  const out = await new Deno.Command("sh", {
    args: ["-c", 'eval "$FLOR_ENV"; printf "%s|%s" "$ALL_PROXY" "$all_proxy"'],
    env: { FLOR_ENV: text },
    stdout: "piped",
  }).output();
  assert.equal(
    new TextDecoder().decode(out.stdout),
    "socks5h://127.0.0.1:1080|socks5h://127.0.0.1:1080",
  );
  assert.ok(text.includes("PAC) URL http://127.0.0.1:9465/proxy.pac"));
  assert.ok(text.includes("Firefox"));
  assert.ok(text.includes("http.http://*.flor.proxy"));
});

Deno.test("shell_env: fish and PowerShell syntax", () => {
  const fish = shellEnv(input("fish"));
  assert.ok(fish.includes("set -gx ALL_PROXY 'socks5h://127.0.0.1:1080'\n"), fish);
  assert.ok(fish.includes("set -gx all_proxy 'socks5h://127.0.0.1:1080'\n"), fish);
  assert.ok(fish.includes("flor env --shell fish | source"));
  const ps = shellEnv(input("powershell"));
  assert.ok(ps.includes("$env:ALL_PROXY = 'socks5h://127.0.0.1:1080'\n"), ps);
  assert.ok(ps.includes("Invoke-Expression"));
  for (const text of [fish, ps]) {
    const live = text.split("\n").filter((l) => l && !l.startsWith("#"));
    assert.equal(live.length, 2, `only the two variables are commands:\n${text}`);
  }
});

Deno.test("shell_env: without an HTTP address it says how to get the PAC file", () => {
  assert.ok(shellEnv(input("sh")).includes("set listen.metrics"));
});

Deno.test("shell_env: the default shell follows the OS and $SHELL", () => {
  assert.equal(defaultShell("windows", { SHELL: "/usr/bin/fish" }), "powershell");
  assert.equal(defaultShell("linux", { SHELL: "/usr/bin/fish" }), "fish");
  assert.equal(defaultShell("darwin", { SHELL: "/bin/zsh" }), "sh");
  assert.equal(defaultShell("linux", {}), "sh");
});

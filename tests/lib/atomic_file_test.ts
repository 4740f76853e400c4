import assert from "node:assert/strict";
import { join } from "node:path";
import { windowsOwnerOnlyArgs, writeOwnerOnly } from "../../lib/atomic_file.ts";

Deno.test("atomic_file: the Windows ACL grants the owner alone and drops inherited entries", () => {
  assert.deepEqual(
    windowsOwnerOnlyArgs("C:\\ProgramData\\Florete\\etc\\keys\\node-n1.key", "svc-flor"),
    [
      "C:\\ProgramData\\Florete\\etc\\keys\\node-n1.key",
      "/inheritance:r",
      "/grant:r",
      "svc-flor:F",
    ],
  );
});

Deno.test({
  name: "atomic_file: POSIX files are 0600 whatever the umask, written atomically",
  ignore: Deno.build.os === "windows",
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const path = join(dir, "secret");
      await writeOwnerOnly(path, "one");
      await writeOwnerOnly(path, "two");
      assert.equal(await Deno.readTextFile(path), "two");
      assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
      const leftovers = [];
      for await (const e of Deno.readDir(dir)) leftovers.push(e.name);
      assert.deepEqual(leftovers, ["secret"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

import assert from "node:assert/strict";
import { join } from "node:path";
import { exists } from "../../lib/file_exists.ts";

Deno.test("file_exists: a file, a directory and a link to a file exist", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "f");
    await Deno.writeTextFile(file, "x");
    await Deno.symlink(file, join(dir, "link"));
    assert.equal(await exists(file), true);
    assert.equal(await exists(dir), true);
    assert.equal(await exists(join(dir, "link")), true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("file_exists: nothing there, under a file, or a dangling link: false", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "f");
    await Deno.writeTextFile(file, "x");
    await Deno.symlink(join(dir, "gone"), join(dir, "dangling"));
    assert.equal(await exists(join(dir, "missing")), false);
    assert.equal(await exists(join(file, "inside")), false);
    assert.equal(await exists(join(dir, "dangling")), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("file_exists: a failure other than absence is thrown, not read as absent", async () => {
  // A path longer than PATH_MAX: the kernel cannot say (ENAMETOOLONG), even as root.
  const tooLong = "/" + "a/".repeat(2_100);
  await assert.rejects(exists(tooLong));
});

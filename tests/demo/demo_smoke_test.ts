/**
 * The README's main command keeps working: `deno task demo --smoke` builds the demo cluster,
 * makes a request through the mesh, sees a refusal, florctl status, a forward and the PAC file,
 * and exits 0 only when each of them worked.
 */
import assert from "node:assert/strict";
import { join } from "node:path";

const REPO = join(import.meta.dirname!, "..", "..");

Deno.test("demo: deno task demo --smoke passes", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--config", join(REPO, "deno.json"), "demo", "--smoke"],
    cwd: REPO,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
  assert.match(text, /smoke test passed/);
});

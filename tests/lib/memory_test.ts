import assert from "node:assert/strict";
import { join } from "node:path";
import { AGENT_V8_FLAGS_ARG } from "../../lib/memory.ts";
import { REPO } from "../e2e/harness.ts";

/** Many short-lived objects with a few thousand alive at a time, as a relay's chunks are:
 * V8 answers by growing its young generation. Prints the V8 heap's size in MB. */
const CHURN = `
let live = [];
for (let i = 0; i < 3_000_000; i++) {
  live.push({ i, s: "x" + i, a: [i, i] });
  if (live.length > 20_000) live = [];
}
console.log(Deno.memoryUsage().heapTotal / 1e6);
`;

/** Between the two (measured: ~80 MB without the flags, 14-21 MB with them). */
const HEAP_BOUND_MB = 40;

async function heapTotalMb(v8Flags: string[]): Promise<number> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", ...v8Flags, CHURN],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return Number(new TextDecoder().decode(out.stdout).trim());
}

Deno.test("memory: the agents' V8 flags keep a churning heap small", async () => {
  const without = await heapTotalMb([]);
  const withFlags = await heapTotalMb([AGENT_V8_FLAGS_ARG]);
  // The workload must grow the heap without the flags, or this test proves nothing.
  assert.ok(without > HEAP_BOUND_MB, `without the flags the heap reached only ${without} MB`);
  assert.ok(
    withFlags < HEAP_BOUND_MB,
    `with ${AGENT_V8_FLAGS_ARG} the heap reached ${withFlags} MB`,
  );
});

Deno.test("memory: deno task flor and flor-gw pass the agents' V8 flags", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(join(REPO, "deno.json"))).tasks;
  for (const name of ["flor", "flor-gw"]) {
    assert.ok(
      tasks[name].split(" ").includes(AGENT_V8_FLAGS_ARG),
      `deno.json task ${name} lacks ${AGENT_V8_FLAGS_ARG}: ${tasks[name]}`,
    );
  }
});

import assert from "node:assert/strict";
import { join } from "node:path";
import { AGENT_V8_FLAGS_ARG } from "../../lib/memory.ts";
import { REPO } from "../e2e/harness.ts";

/** Many short-lived objects with a few thousand alive at a time, as a relay's chunks are:
 * V8 answers by growing its young generation. Prints the largest size the young generation
 * (new_space) reached, in MB. The young generation is what the flag caps; the whole heap's
 * size at one moment depends on when the last old-generation collection ran (it measured
 * 25-62 MB with the flags at the end of this loop), so it is not what this test reads. */
const CHURN = `
import v8 from "node:v8";
let live = [];
let largest = 0;
for (let i = 0; i < 3_000_000; i++) {
  live.push({ i, s: "x" + i, a: [i, i] });
  if (live.length > 20_000) live = [];
  if (i % 10_000 === 0) {
    const young = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
    largest = Math.max(largest, young.space_size);
  }
}
console.log(largest / 1e6);
`;

/** Between the two (measured: 67 MB without the flags, 5.0-5.5 MB with them). */
const YOUNG_BOUND_MB = 16;

async function youngGenerationMb(v8Flags: string[]): Promise<number> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", ...v8Flags, CHURN],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return Number(new TextDecoder().decode(out.stdout).trim());
}

Deno.test("memory: the agents' V8 flags keep the young generation small", async () => {
  const without = await youngGenerationMb([]);
  const withFlags = await youngGenerationMb([AGENT_V8_FLAGS_ARG]);
  // The workload must grow the young generation without the flags, or this proves nothing.
  assert.ok(without > YOUNG_BOUND_MB, `without the flags it reached only ${without} MB`);
  assert.ok(withFlags < YOUNG_BOUND_MB, `with ${AGENT_V8_FLAGS_ARG} it reached ${withFlags} MB`);
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

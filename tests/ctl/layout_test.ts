/** ctl/'s layout is its architecture: main.ts registers commands, a command never imports
 * another command (what two share is a support module), support never imports a command. */
import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const CTL = fileURLToPath(new URL("../../ctl/", import.meta.url));

/** Relative import specifiers of a source file, resolved to paths under ctl/. */
async function localImports(file: string): Promise<string[]> {
  const text = await Deno.readTextFile(file);
  const specs = [...text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)].map((m) => m[1]);
  return specs.map((s) => relative(CTL, resolve(dirname(file), s)));
}

async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(join(CTL, dir))) {
    if (e.isFile && e.name.endsWith(".ts")) out.push(join(CTL, dir, e.name));
  }
  return out.sort();
}

Deno.test("ctl layout: main.ts is the only file beside commands/ and support/", async () => {
  const top: string[] = [];
  for await (const e of Deno.readDir(CTL)) top.push(e.isDirectory ? `${e.name}/` : e.name);
  assert.deepEqual(top.sort(), ["commands/", "main.ts", "support/"]);
});

Deno.test("ctl layout: a command imports support modules and lib/, never another command", async () => {
  const files = await tsFiles("commands");
  assert.ok(files.length >= 15, `${files.length} commands`);
  for (const file of files) {
    for (const target of await localImports(file)) {
      assert.ok(
        target.startsWith("support/") || target.startsWith("../lib/"),
        `${relative(CTL, file)} imports ${target}: move what two commands share into support/`,
      );
    }
  }
});

Deno.test("ctl layout: support modules never import a command or main.ts", async () => {
  for (const file of await tsFiles("support")) {
    for (const target of await localImports(file)) {
      assert.ok(
        target.startsWith("support/") || target.startsWith("../lib/"),
        `${relative(CTL, file)} imports ${target}`,
      );
    }
  }
});

Deno.test("ctl layout: the import scan sees the imports it checks", async () => {
  // A scan that found nothing would pass every test above.
  const main = await localImports(join(CTL, "main.ts"));
  assert.ok(main.includes("commands/deploy.ts"), main.join(", "));
  assert.ok(main.includes("../lib/version.ts"), main.join(", "));
});

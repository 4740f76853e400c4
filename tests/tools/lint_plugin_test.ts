/** The `florete/max-function-lines` rule on fixture sources, through Deno's own plugin runner
 * (the same AST `deno lint` gives it), and the tree itself against the real rule. */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import plugin, { lineSpan, MAX_FUNCTION_LINES, maxFunctionLines } from "../../tools/lint_plugin.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const LIMIT = 5;

function lint(file: string, source: string) {
  const fixture: Deno.lint.Plugin = {
    name: "florete",
    rules: { "max-function-lines": maxFunctionLines({ repo: REPO, limit: LIMIT }) },
  };
  return Deno.lint.runPlugin(fixture, REPO + file, source).map((d) => d.message);
}

/** A function declaration spanning exactly `lines` lines. */
function fn(name: string, lines: number): string {
  const body = Array.from({ length: lines - 2 }, (_, i) => `  const v${i} = ${i};`);
  return [`export function ${name}() {`, ...body, "}", ""].join("\n");
}

Deno.test("max-function-lines: a function at the limit passes, one line more is reported", () => {
  assert.deepEqual(lint("lib/x.ts", fn("atLimit", LIMIT)), []);
  assert.deepEqual(lint("lib/x.ts", fn("tooLong", LIMIT + 1)), [
    `function tooLong is ${LIMIT + 1} lines, over the limit of ${LIMIT}`,
  ]);
});

Deno.test("max-function-lines: arrows, methods and properties are named as assigned", () => {
  const body = "{\n1;\n2;\n3;\n4;\n}";
  const source = [
    `const arrow = () => ${body};`,
    `class C { method() ${body} }`,
    `const o = { prop: function () ${body}, "quoted-key": () => ${body} };`,
    `x.member = () => ${body};`,
    `run(() => ${body});`,
    `const named = function inner() ${body};`,
  ].join("\n");
  assert.deepEqual(
    lint("agent/x.ts", source).map((m) => m.split(" ")[1]),
    ["arrow", "method", "prop", "quoted-key", "member", "<anonymous>", "inner"],
  );
});

Deno.test("max-function-lines: only agent/, ctl/, gateway/ and lib/ are checked", () => {
  for (const dir of ["agent", "ctl", "ctl/commands", "gateway", "lib"]) {
    assert.equal(lint(`${dir}/x.ts`, fn("f", LIMIT + 1)).length, 1, dir);
  }
  for (const dir of ["tests/lib", "tools", "tests/e2e"]) {
    assert.deepEqual(lint(`${dir}/x.ts`, fn("f", LIMIT + 1)), [], dir);
  }
  assert.deepEqual(lint("../elsewhere/lib/x.ts", fn("f", LIMIT + 1)), []);
});

Deno.test("max-function-lines: lines are counted first to last, inclusive", () => {
  assert.equal(lineSpan("a", [0, 1]), 1);
  assert.equal(lineSpan("{\n}", [0, 3]), 2);
  assert.equal(lineSpan("x\n{\n\n}\ny", [2, 6]), 3);
});

Deno.test("max-function-lines: no function in agent/, ctl/, gateway/, lib/ is over the limit", async () => {
  assert.equal(MAX_FUNCTION_LINES, 120);
  const over: string[] = [];
  for (const dir of ["agent", "ctl", "ctl/commands", "ctl/support", "gateway", "lib"]) {
    for await (const e of Deno.readDir(join(REPO, dir))) {
      if (!e.isFile || !e.name.endsWith(".ts")) continue;
      const file = join(REPO, dir, e.name);
      const found = Deno.lint.runPlugin(plugin, file, await Deno.readTextFile(file));
      over.push(...found.map((d) => `${dir}/${e.name}: ${d.message}`));
    }
  }
  assert.deepEqual(over, []);
});

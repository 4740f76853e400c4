/** The `florete/max-function-lines` rule on fixture sources, through Deno's own plugin runner
 * (the same AST `deno lint` gives it), and the known-offender list against the tree. */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { LONG_FUNCTIONS, MAX_FUNCTION_LINES } from "../../tools/long_functions.ts";
import plugin, { lineSpan, maxFunctionLines } from "../../tools/lint_plugin.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const LIMIT = 5;

function lint(file: string, source: string, allow = [] as { file: string; name: string }[]) {
  const fixture: Deno.lint.Plugin = {
    name: "florete",
    rules: { "max-function-lines": maxFunctionLines({ repo: REPO, limit: LIMIT, allow }) },
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

Deno.test("max-function-lines: a known offender passes while it is still too long", () => {
  const allow = [{ file: "agent/pool.ts", name: "createPool" }];
  assert.deepEqual(lint("agent/pool.ts", fn("createPool", LIMIT + 10), allow), []);
  // The entry covers that file only, and that function only.
  assert.equal(lint("agent/other.ts", fn("createPool", LIMIT + 10), allow).length, 1);
  assert.equal(
    lint("agent/pool.ts", fn("createPool", LIMIT + 10) + fn("newOne", LIMIT + 1), allow).length,
    1,
  );
});

Deno.test("max-function-lines: a known offender that was split (or is gone) must leave the list", () => {
  const allow = [{ file: "agent/pool.ts", name: "createPool" }];
  const expected = [
    `agent/pool.ts: createPool is listed in tools/long_functions.ts but is no longer over ` +
    `${LIMIT} lines (or is gone)`,
  ];
  assert.deepEqual(lint("agent/pool.ts", fn("createPool", LIMIT), allow), expected);
  assert.deepEqual(lint("agent/pool.ts", fn("renamed", LIMIT + 10), allow).slice(-1), expected);
});

Deno.test("max-function-lines: lines are counted first to last, inclusive", () => {
  assert.equal(lineSpan("a", [0, 1]), 1);
  assert.equal(lineSpan("{\n}", [0, 3]), 2);
  assert.equal(lineSpan("x\n{\n\n}\ny", [2, 6]), 3);
});

Deno.test("max-function-lines: every known offender names a file that exists", async () => {
  for (const f of LONG_FUNCTIONS) {
    const source = await Deno.readTextFile(REPO + f.file).catch(() => undefined);
    assert.ok(source !== undefined, `tools/long_functions.ts names ${f.file}, which is gone`);
    // The real plugin (deno.json's) finds it still too long, so it reports nothing for it.
    const messages = Deno.lint.runPlugin(plugin, REPO + f.file, source).map((d) => d.message);
    assert.ok(!messages.some((m) => m.includes(` ${f.name} `)), messages.join("\n"));
  }
  assert.equal(MAX_FUNCTION_LINES, 120);
});

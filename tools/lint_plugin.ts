/**
 * Florete's own lint rules, loaded by `deno lint` through deno.json's `lint.plugins`, so CI's
 * `deno lint` runs them with the built-in rules.
 *
 * `florete/max-function-lines`: no function in agent/, ctl/, gateway/ or lib/ longer than
 * MAX_FUNCTION_LINES lines (first line to last, inclusive). Issue 12 split the last five
 * offenders; there is no list of exceptions.
 */
import { fileURLToPath } from "node:url";

/** Past this a function no longer reads on one screen and hides pieces that have a name;
 * the issue-12 review set it at ~120 after reading the tree's longest functions. */
export const MAX_FUNCTION_LINES = 120;

/** Where the rule applies: the product's code, not tests or tools. */
const CHECKED_DIRS = ["agent/", "ctl/", "gateway/", "lib/"];

const REPO = fileURLToPath(new URL("..", import.meta.url));

/** `filename` relative to the repository, `/`-separated; undefined outside it. */
export function repoPath(filename: string, repo = REPO): string | undefined {
  const path = filename.replaceAll("\\", "/");
  return path.startsWith(repo) ? path.slice(repo.length) : undefined;
}

type FunctionNode =
  | Deno.lint.FunctionDeclaration
  | Deno.lint.FunctionExpression
  | Deno.lint.ArrowFunctionExpression;

/** The name a function goes by: its own, or what it is assigned to. */
export function functionName(node: FunctionNode): string {
  if (
    (node.type === "FunctionDeclaration" || node.type === "FunctionExpression") && node.id
  ) {
    return node.id.name;
  }
  const parent = node.parent;
  switch (parent.type) {
    case "VariableDeclarator":
      return parent.id.type === "Identifier" ? parent.id.name : "<anonymous>";
    case "MethodDefinition":
    case "Property":
    case "PropertyDefinition":
      return _keyName(parent.key);
    case "AssignmentExpression":
      if (parent.left.type === "Identifier") return parent.left.name;
      if (parent.left.type === "MemberExpression") return _keyName(parent.left.property);
      return "<anonymous>";
    default:
      return "<anonymous>";
  }
}

function _keyName(key: Deno.lint.Node): string {
  if (key.type === "Identifier" || key.type === "PrivateIdentifier") return key.name;
  if (key.type === "Literal") return String(key.value);
  return "<anonymous>";
}

/** Lines from the first to the last character of `range` in `text`, inclusive. */
export function lineSpan(text: string, range: Deno.lint.Range): number {
  let lines = 1;
  for (let i = range[0]; i < range[1]; i++) if (text.charCodeAt(i) === 10) lines++;
  return lines;
}

export interface MaxFunctionLinesOptions {
  /** The repository root, ending in `/`. */
  repo: string;
  limit: number;
}

/** The rule, with its inputs explicit so tests can drive it on fixture sources. */
export function maxFunctionLines(o: MaxFunctionLinesOptions): Deno.lint.Rule {
  return { create: (context) => _visitor(context, o) };
}

function _visitor(
  context: Deno.lint.RuleContext,
  o: MaxFunctionLinesOptions,
): Deno.lint.LintVisitor {
  const file = repoPath(context.filename, o.repo);
  if (file === undefined || !CHECKED_DIRS.some((d) => file.startsWith(d))) return {};
  const check = (node: FunctionNode) => {
    const lines = lineSpan(context.sourceCode.text, node.range);
    if (lines <= o.limit) return;
    context.report({
      node,
      message: `function ${functionName(node)} is ${lines} lines, over the limit of ${o.limit}`,
      hint: "split it where a piece has a name (a decision, a step, a registration)",
    });
  };
  return {
    FunctionDeclaration: check,
    FunctionExpression: check,
    ArrowFunctionExpression: check,
  };
}

const plugin: Deno.lint.Plugin = {
  name: "florete",
  rules: {
    "max-function-lines": maxFunctionLines({ repo: REPO, limit: MAX_FUNCTION_LINES }),
  },
};

export default plugin;

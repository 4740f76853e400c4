/** `florctl deploy`'s summary line (the per-node runs are tests/e2e/operate_test.ts). */
import assert from "node:assert/strict";
import { deploySummary } from "../../../ctl/commands/deploy.ts";

Deno.test("deploy: the summary counts each outcome and names the nodes that failed", () => {
  const results = [
    { node: "n1", outcome: "updated" as const, detail: "" },
    { node: "n2", outcome: "unchanged" as const, detail: "" },
    { node: "n3", outcome: "skipped" as const, detail: "no ssh target" },
    { node: "n4", outcome: "failed" as const, detail: "ssh: connection refused" },
    { node: "n5", outcome: "failed" as const, detail: "did not come up" },
  ];
  assert.equal(
    deploySummary(results, false),
    "deploy: 1 updated, 1 unchanged, 1 skipped, 2 failed (n4, n5)",
  );
  assert.equal(
    deploySummary(results.slice(0, 2), true),
    "deploy (dry run): 1 to update, 1 unchanged, 0 skipped, 0 failed",
  );
});

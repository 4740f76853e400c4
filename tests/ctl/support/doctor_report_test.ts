/** How doctor's checks add up to a report and print. */
import assert from "node:assert/strict";
import { doctorReport, formatChecks } from "../../../ctl/support/doctor_report.ts";
import { configHashCheck, versionSkewCheck } from "../../../ctl/support/node_checks.ts";

Deno.test("doctor: report is not ok when any check fails; output lines and fixes", () => {
  const checks = [
    configHashCheck("n1", "a", "a"),
    versionSkewCheck("0.2.0", [{ node: "n1", version: "0.1.0" }]),
    configHashCheck("n2", "a", "b"),
  ];
  assert.equal(doctorReport(checks).ok, false);
  assert.equal(doctorReport(checks.slice(0, 2)).ok, true);
  const lines = formatChecks(checks).split("\n");
  const starts = (i: number, prefix: string) =>
    assert.ok(lines[i].startsWith(prefix), `line ${i}: ${lines[i]}`);
  starts(0, "OK    config_hash   n1: runs config a");
  starts(1, "WARN  version_skew  cluster: different releases");
  starts(2, "      fix: install florctl's release 0.2.0 on n1");
  starts(3, "FAIL  config_hash   n2: ");
  starts(4, "      fix: florctl deploy --node n2");
  assert.equal(lines[5], "1 ok, 1 warning(s), 1 failure(s)");
});

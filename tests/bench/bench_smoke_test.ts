/**
 * `deno task bench --smoke` in the test suite, so the bench cannot rot: it must build its
 * environments, run every path and produce numbers. It asserts that numbers exist and are
 * sane, never how fast anything is (a benchmark on a shared machine is not a test).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO } from "../e2e/harness.ts";
import { canCreateNamespaces } from "../e2e/netns.ts";
import type { BenchReport } from "./tunnel_bench.ts";

const CAN = await canCreateNamespaces();
if (!CAN) console.warn("bench smoke skipped: the bench needs root and `ip netns`");

Deno.test({
  name: "bench: --smoke measures direct TCP, ssh -D and Florete over a WAN link",
  ignore: !CAN,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "florete-bench-smoke-" });
    try {
      const json = join(dir, "bench.json");
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["task", "bench", "--smoke", "--json", json],
        cwd: REPO,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr) + text);
      assert.match(text, /\| Florete\/ssh /);
      assert.match(text, /targets \(issue 10\):\n(PASS|FAIL|info) /);
      assert.match(text, /TCP \w+\/\w+, Florete /);

      const report = JSON.parse(await Deno.readTextFile(json)) as BenchReport;
      assert.equal(report.options.smoke, true);
      assert.deepEqual(report.runs.map((r) => r.path), ["direct", "ssh", "flor"]);
      for (const r of report.runs) {
        const what = `${r.path}: ${JSON.stringify(r)}`;
        assert.ok(r.flowMBps > 0 && r.flowBytes > 0, what);
        assert.ok(
          r.coldMs > 0 && r.latencyMedianMs > 0 && r.latencyP99Ms >= r.latencyMedianMs,
          what,
        );
        assert.equal(r.concurrent.completed, r.concurrent.n, what);
        // 40 ms RTT: nothing answers faster than the link allows.
        assert.ok(r.latencyMedianMs >= 40, what);
        assert.ok(Number.isInteger(r.udpRcvbufErrors), what);
      }
      const rss = Object.assign({}, ...report.runs.map((r) => r.peakRssMb));
      for (const k of ["ssh", "sshd", "user agent", "node agent"]) {
        assert.ok(rss[k] > 1, `peak RSS of ${k}: ${JSON.stringify(rss)}`);
      }
      assert.equal(report.links.length, 1);
      assert.ok(report.links[0].congestion.tcpClient.length > 0);
      assert.ok(report.targets.length > 0);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

import assert from "node:assert/strict";
import { reportMarkdown } from "./report.ts";
import { judge } from "./verdict.ts";

Deno.test("report: verdict first, a row per fault, failures listed, agents, notes", () => {
  const r = judge({
    started_at: "2026-01-01T00:00:00Z",
    shape: { nodes: 4, users: 12, services: 16, minutes: 5, wan: "veth" },
    faults: [{
      kind: "partition",
      target: "site A | n1",
      started_s: 30,
      detected_s: 32.1,
      recovered_s: 53,
      detect_bound_s: 3,
      bound_s: 3,
      recover_from_s: 50,
      ok: false,
      notes: ["peer.up after 3.5 s (bound 3 s)"],
      excuses: [],
    }],
    requests: [{
      start_s: 31,
      end_s: 32,
      principal: "user:u1",
      service: "web1",
      node: "n1",
      kind: "short",
      ok: false,
      latency_ms: 1000,
      error: "exit 97",
    }],
    samples: [{ name: "n1", pid: 1, t_s: 0, rss_mb: 80, fds: 20 }],
    retired: { n1: 0 },
  });
  const md = reportMarkdown(r, "run.svg");
  assert.match(md, /^# Testbed run 2026-01-01T00:00:00Z: FAIL\n/);
  assert.match(md, /- fault partition \(site A \| n1\) at 30 s: peer.up after 3.5 s/);
  assert.match(md, /!\[timeline\]\(run\.svg\)/);
  assert.match(md, /\| partition \| site A \\\| n1 \| 30 \| 32.1 \| 53 \| 3 \/ 3 \| \*\*no\*\* \|/);
  assert.match(md, /- 31 s user:u1 -> web1 \(short, n1\): exit 97/);
  assert.match(md, /0 ok, 1 failed \(0 inside the fault they belong to, 1 outside\)/);
  assert.match(md, /\| n1 \| 80 \| 80 \|/);
});

/**
 * docs/prometheus/florete-rules.yml: promtool accepts it, its unit tests
 * (florete-rules.test.yml, synthetic series) pass, every alert has a test that makes it
 * fire, and every flor_ metric it reads is one the agent exports.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import { createAgentMetrics } from "../../agent/agent_metrics.ts";

const RULES = fileURLToPath(new URL("../../docs/prometheus/florete-rules.yml", import.meta.url));
const RULE_TESTS = fileURLToPath(
  new URL("./prometheus/florete-rules.test.yml", import.meta.url),
);

/** Metrics other branches add in parallel (UDP socket: h2; reload: h3). Remove each name
 * once agent/agent_metrics.ts exports it. */
const PENDING_METRICS = new Set(["flor_udp_receive_errors_total", "flor_reload_failures_total"]);

const HAS_PROMTOOL = await new Deno.Command("promtool", { args: ["--version"], stdout: "null" })
  .output().then((o) => o.success, () => false);

async function promtool(...args: string[]): Promise<string> {
  const out = await new Deno.Command("promtool", { args, stdout: "piped", stderr: "piped" })
    .output();
  const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `promtool ${args.join(" ")}:\n${said}`);
  return said;
}

interface Rule {
  alert: string;
  expr: string;
  annotations?: Record<string, string>;
}

async function rules(): Promise<Rule[]> {
  const doc = YAML.parse(await Deno.readTextFile(RULES));
  return doc.groups.flatMap((g: { rules: Rule[] }) => g.rules);
}

Deno.test({
  name: "prometheus rules: promtool check rules accepts the file",
  ignore: !HAS_PROMTOOL,
  async fn() {
    assert.match(await promtool("check", "rules", RULES), /SUCCESS: 7 rules found/);
  },
});

Deno.test({
  name: "prometheus rules: promtool test rules passes",
  ignore: !HAS_PROMTOOL,
  async fn() {
    assert.match(await promtool("test", "rules", RULE_TESTS), /SUCCESS/);
  },
});

// promtool compares the whole list of alerts at each eval_time, so the series in a test that
// are not expected (another instance, a flat counter) are checked not to fire.
Deno.test("prometheus rules: every alert has a test where it fires, and a summary and fix", async () => {
  const tests = YAML.parse(await Deno.readTextFile(RULE_TESTS)).tests as {
    alert_rule_test: { alertname: string; exp_alerts: unknown[] }[];
  }[];
  const cases = tests.flatMap((t) => t.alert_rule_test);
  for (const r of await rules()) {
    const mine = cases.filter((c) => c.alertname === r.alert);
    assert.ok(mine.some((c) => c.exp_alerts.length > 0), `${r.alert}: no test where it fires`);
    assert.ok(r.annotations?.summary, `${r.alert}: no summary`);
    assert.ok(r.annotations?.description, `${r.alert}: no description saying what to do`);
  }
});

Deno.test("prometheus rules: every flor_ metric they read is exported by the agent", async () => {
  const exported = new Set(
    [...createAgentMetrics().registry.render().matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]),
  );
  for (const r of await rules()) {
    for (const [name] of r.expr.matchAll(/\bflor_[a-z_]+/g)) {
      assert.ok(
        exported.has(name) || PENDING_METRICS.has(name),
        `${r.alert} reads ${name}, which agent/agent_metrics.ts does not export`,
      );
    }
  }
});

/**
 * docs/prometheus/florete-rules.yml in a real Prometheus server (/usr/bin/prometheus,
 * loopback ports, a temporary data directory): it scrapes two node agents, and
 * FloreteAgentDown fires for the one killed with -9 and not for the other.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import { agentFlags, withFixture } from "./fixture.ts";
import { freeTcpPort } from "./harness.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };
const RULES = fileURLToPath(new URL("../../docs/prometheus/florete-rules.yml", import.meta.url));
/** Scrapes and rule evaluations every second keep the test short. */
const INTERVAL = "1s";
/** FloreteAgentDown waits 1 minute in the shipped file; here 3 s, so the test takes seconds
 * (promtool's unit tests check the real `for`). */
const AGENT_DOWN_FOR = "3s";
const ALERT_TIMEOUT_MS = 30_000;

const HAS_PROMETHEUS = await new Deno.Command("prometheus", { args: ["--version"], stdout: "null" })
  .output().then((o) => o.success, () => false);

interface Prometheus {
  url: string;
  stop(): Promise<void>;
  log(): string;
}

async function startPrometheus(dir: string, targets: string[]): Promise<Prometheus> {
  const rules = YAML.parse(await Deno.readTextFile(RULES));
  for (
    const r of rules.groups.flatMap((g: { rules: { alert: string; for?: string }[] }) => g.rules)
  ) {
    if (r.alert === "FloreteAgentDown") r.for = AGENT_DOWN_FOR;
  }
  await Deno.writeTextFile(join(dir, "rules.yml"), YAML.stringify(rules));
  await Deno.writeTextFile(
    join(dir, "prometheus.yml"),
    YAML.stringify({
      global: {
        scrape_interval: INTERVAL,
        scrape_timeout: INTERVAL,
        evaluation_interval: INTERVAL,
      },
      rule_files: [join(dir, "rules.yml")],
      scrape_configs: [{ job_name: "florete", static_configs: [{ targets }] }],
    }),
  );
  const port = freeTcpPort();
  const child = new Deno.Command("prometheus", {
    args: [
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let log = "";
  const drained = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) log += chunk;
  })();
  const p: Prometheus = {
    url: `http://127.0.0.1:${port}`,
    log: () => log,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
      await drained;
    },
  };
  try {
    await until(async () => (await fetch(`${p.url}/-/ready`).catch(() => undefined))?.ok, p);
  } catch (e) {
    await p.stop();
    throw e;
  }
  return p;
}

async function api(p: Prometheus, path: string): Promise<any> {
  const res = await fetch(`${p.url}/api/v1/${path}`);
  assert.equal(res.status, 200, path);
  return (await res.json()).data;
}

async function until(f: () => Promise<boolean | undefined>, p: Prometheus, ms = ALERT_TIMEOUT_MS) {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms; prometheus said:\n${p.log()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

Deno.test({
  name: "e2e: prometheus scrapes two agents and FloreteAgentDown fires for the one killed",
  ignore: !HAS_PROMETHEUS,
  ...e2e,
  fn: () =>
    withFixture(async (fx, start) => {
      const a1 = agentFlags({ metrics: true });
      const a2 = agentFlags({ metrics: true });
      await start(join(fx.bundles.n1, "flor.yaml"), a1.flags);
      const n2 = await start(join(fx.bundles.n2, "flor.yaml"), a2.flags);
      const [t1, t2] = [`127.0.0.1:${a1.metrics}`, `127.0.0.1:${a2.metrics}`];
      const prom = await startPrometheus(fx.root, [t1, t2]);
      try {
        await until(async () => {
          const targets = (await api(prom, "targets")).activeTargets as { health: string }[];
          return targets.length === 2 && targets.every((t) => t.health === "up");
        }, prom);
        // The certificate gauge arrives with one series per identity the node holds: its
        // own and those of the services it hosts.
        const expiry = await api(prom, "query?query=flor_certificate_expiry_timestamp_seconds");
        assert.deepEqual(
          expiry.result.map((r: any) => `${r.metric.instance} ${r.metric.identity}`).sort(),
          [
            `${t1} node:n1`,
            `${t1} service:echo`,
            `${t1} service:web`,
            `${t2} node:n2`,
            `${t2} service:ci`,
            `${t2} service:dead`,
          ].sort(),
        );
        const days = (Number(expiry.result[0].value[1]) * 1000 - Date.now()) / 86_400_000;
        assert.ok(days > 300, `node certificate expires in ${days} days, expected about 365`);

        await n2.stop("SIGKILL");
        const killedAt = Date.now();
        let firing: any[] = [];
        await until(async () => {
          const alerts = (await api(prom, "alerts")).alerts as any[];
          firing = alerts.filter((a) => a.labels.alertname === "FloreteAgentDown");
          return firing.some((a) => a.state === "firing");
        }, prom);
        console.log(`FloreteAgentDown firing ${Date.now() - killedAt} ms after the kill`);
        assert.deepEqual(firing.map((a) => [a.labels.instance, a.state]), [[t2, "firing"]]);
        assert.equal(
          firing[0].annotations.summary,
          `flor agent ${t2} is down (not answering /metrics for 1 minute)`,
        );
        // No other alert for the healthy agent (certificates have a year left, no restarts).
        const others = ((await api(prom, "alerts")).alerts as any[])
          .filter((a) => a.labels.instance === t1);
        assert.deepEqual(others, []);
      } finally {
        await prom.stop();
      }
    }),
});

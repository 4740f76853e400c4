/**
 * `florctl status` and `florctl doctor` against real agents on 127.0.0.1 (no ssh): a healthy
 * cluster, a certificate about to expire, cluster.yaml changed after bundling (config
 * drift), and a node that stopped. Then doctor's ssh look at unreachable nodes, through a
 * real sshd: agent down, agent running but silent on UDP, ssh itself failing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import YAML from "yaml";
import {
  certificatePem,
  exportPrivateKeyPem,
  generateKeyPair,
  importPrivateKeyPem,
  issueCertificate,
  parseCertificate,
} from "../../lib/pki.ts";
import type { DoctorCheck, DoctorReport } from "../../ctl/support/doctor_report.ts";
import type { StatusReport, StatusRow } from "../../ctl/commands/status.ts";
import { agentFlags, buildFixture } from "./fixture.ts";
import { type AgentProcess, florctl, freeTcpPort, freeUdpPort, startFlor } from "./harness.ts";
import { startSshd } from "./sshd.ts";

const e2e = { sanitizeOps: false, sanitizeResources: false };

Deno.test("e2e: florctl status and doctor on a live cluster", e2e, async (t) => {
  const fx = await buildFixture();
  const agents: Record<string, AgentProcess> = {};
  const ctl = (...args: string[]) => florctl([...args, "--dir", fx.dir]);
  const statusJson = async () => {
    const r = await ctl("status", "--json");
    const report = JSON.parse(r.stdout) as StatusReport;
    const row = (n: string) => report.nodes.find((x) => x.node === n) as StatusRow;
    return { code: r.code, report, row, stderr: r.stderr };
  };
  const doctorJson = async () => {
    const r = await ctl("doctor", "--json");
    const report = JSON.parse(r.stdout) as DoctorReport;
    const find = (check: string, subject: string) =>
      report.checks.find((c) => c.check === check && c.subject === subject) as DoctorCheck;
    return { code: r.code, report, find };
  };
  try {
    agents.n1 = await startFlor(join(fx.bundles.n1, "flor.yaml"), agentFlags().flags);
    agents.n2 = await startFlor(join(fx.bundles.n2, "flor.yaml"), agentFlags().flags);

    await t.step("both nodes healthy: status exit 0, reachable, config as expected", async () => {
      const s = await statusJson();
      assert.equal(s.code, 0, s.stderr + JSON.stringify(s.report, null, 2));
      assert.equal(s.report.healthy, true);
      assert.deepEqual(s.report.nodes.map((r) => r.node), ["n1", "n2"]);
      for (const n of ["n1", "n2"]) {
        const r = s.row(n);
        assert.equal(r.reachable, true);
        // The hash florctl expects from cluster.yaml is the one the node computed from the
        // bundle it runs: nothing changed since bundling.
        assert.equal(r.config_hash, r.expected_config_hash);
        assert.equal(r.config_ok, true);
        assert.equal(r.healthy, true);
        assert.deepEqual(r.problems, []);
        assert.equal(r.version, "0.1.0");
        assert.equal(typeof r.rtt_ms, "number");
        assert.ok(r.rtt_ms! >= 0 && r.rtt_ms! < 1000, `rtt ${r.rtt_ms}`);
        assert.equal(r.unclean_restarts, 0);
        assert.ok(r.rss_bytes! > 0);
        assert.equal(r.auth_failures_last_hour, 0);
      }
      const human = await ctl("status");
      assert.equal(human.code, 0);
      assert.match(human.stdout, /^NODE\s+STATE\s+RTT/);
      assert.match(human.stdout, /all 2 node\(s\) healthy/);
    });

    await t.step("doctor on a healthy cluster: every check ok, exit 0", async () => {
      const d = await doctorJson();
      assert.equal(d.code, 0, JSON.stringify(d.report, null, 2));
      assert.equal(d.report.ok, true);
      // The UDP overflow counter is the host's: other programs on a shared test machine move
      // it, so only that one warning is tolerated here (tests/ctl covers the verdicts).
      const hostOverflows = (c: { check: string; detail: string }) =>
        c.check === "udp_buffer" && /dropped for a full receive buffer/.test(c.detail);
      const notOk = d.report.checks.filter((c) => c.verdict !== "ok" && !hostOverflows(c));
      assert.deepEqual(notOk, []);
      for (const check of ["node_reachable", "clock_skew", "config_hash", "udp_buffer"]) {
        for (const n of ["n1", "n2"]) assert.ok(d.find(check, n), `${check} ${n}`);
      }
      for (const check of ["cluster_yaml", "certificate_expiry", "version_skew"]) {
        assert.ok(d.report.checks.some((c) => c.check === check), check);
      }
    });

    await t.step("a certificate that expires in 7 days: doctor warns for user:bob", async () => {
      const ca = parseCertificate(await Deno.readTextFile(join(fx.dir, "pki/ca.crt")));
      const caKey = await importPrivateKeyPem(await Deno.readTextFile(join(fx.dir, "pki/ca.key")));
      const keys = await generateKeyPair();
      const cert = await issueCertificate({
        ca,
        caKey,
        cluster: "acme",
        principal: { kind: "user", name: "bob" },
        publicKey: keys.publicKey,
        now: new Date(),
        days: 7,
      });
      await Deno.writeTextFile(join(fx.dir, "pki/user/bob.crt"), certificatePem(cert));
      await Deno.writeTextFile(
        join(fx.dir, "pki/user/bob.key"),
        await exportPrivateKeyPem(keys.privateKey),
        { mode: 0o600 },
      );
      const d = await doctorJson();
      const bob = d.find("certificate_expiry", "user:bob");
      assert.ok(bob, JSON.stringify(d.report.checks, null, 2));
      assert.equal(bob.verdict, "warn");
      assert.match(bob.detail, /in 7 day/);
      assert.match(bob.fix, /florctl rotate --within 14d/);
      assert.match(bob.fix, /florctl enroll user bob/);
      assert.equal(d.code, 0, "a warning alone does not fail doctor");
      const human = await ctl("doctor");
      assert.match(human.stdout, /^WARN\s+certificate_expiry\s+user:bob: expires on /m);
      assert.match(human.stdout, /^ {6}fix: `florctl rotate --within 14d`/m);
    });

    await t.step("cluster.yaml changed after bundling: config mismatch", async () => {
      const add = await ctl("user", "add", "carol");
      assert.equal(add.code, 0, add.stderr);
      const s = await statusJson();
      assert.equal(s.code, 1);
      assert.equal(s.report.healthy, false);
      const n1 = s.row("n1");
      assert.equal(n1.reachable, true);
      assert.equal(n1.config_ok, false);
      assert.equal(n1.healthy, false);
      assert.notEqual(n1.config_hash, n1.expected_config_hash);
      assert.match(n1.problems.join("\n"), /florctl deploy --node n1/);
      const d = await doctorJson();
      assert.equal(d.code, 1);
      assert.equal(d.report.ok, false);
      const c = d.find("config_hash", "n1");
      assert.equal(c.verdict, "fail");
      assert.match(c.fix, /florctl deploy --node n1/);
      const human = await ctl("status");
      assert.equal(human.code, 1);
      assert.match(human.stdout, /^n1\s+UNHEALTHY\s.*MISMATCH/m);
    });

    await t.step("n2 stopped: status says unreachable, doctor cannot tell why", async () => {
      await agents.n2.stop();
      const s = await statusJson();
      assert.equal(s.code, 1);
      const n2 = s.row("n2");
      assert.equal(n2.reachable, false);
      assert.equal(n2.healthy, false);
      assert.equal(n2.error_code, "unreachable");
      assert.match(n2.error!, /^unreachable: /);
      assert.equal(typeof n2.expected_config_hash, "string");
      assert.equal(n2.rtt_ms, undefined);
      assert.equal(s.row("n1").reachable, true);
      const d = await doctorJson();
      assert.equal(d.code, 1);
      const c = d.find("node_reachable", "n2");
      assert.equal(c.verdict, "fail");
      assert.match(c.detail, /cannot tell whether the agent is down or UDP is blocked/);
      assert.match(c.detail, /no ssh/);
      assert.match(c.fix, new RegExp(`UDP port ${fx.ports.n2}`));
      assert.equal(d.find("node_reachable", "n1").verdict, "ok");
      // No clock or config verdict for a node that did not answer.
      assert.equal(d.find("clock_skew", "n2"), undefined);
      assert.equal(d.find("config_hash", "n2"), undefined);
      const human = await ctl("status");
      assert.match(human.stdout, /^n2\s+DOWN/m);
      assert.match(human.stdout, /^n2: unreachable: .*florctl doctor/m);
    });

    await t.step("another node's agent at n1's endpoint: doctor says wrong identity", async () => {
      await agents.n1.stop();
      agents.impostor = await startFlor(join(fx.bundles.n2, "flor.yaml"), [
        ...agentFlags().flags,
        "--listen",
        `127.0.0.1:${fx.ports.n1}`,
      ]);
      const s = await statusJson();
      assert.equal(s.row("n1").error_code, "handshake");
      const d = await doctorJson();
      const c = d.find("node_reachable", "n1");
      assert.equal(c.verdict, "fail");
      assert.match(c.detail, /wrong identity: .* does not hold node:n1's certificate/);
      assert.match(c.fix, /nodes\.n1\.endpoint.*florctl enroll node n1/);
    });
  } finally {
    for (const a of Object.values(agents)) await a.stop();
    await fx.cleanup();
  }
});

Deno.test("e2e: doctor looks at an unreachable node's host over ssh", e2e, async () => {
  const fx = await buildFixture();
  const sshd = await startSshd();
  // A process that stands in for an agent that runs but is not heard on UDP.
  const silent = new Deno.Command("sleep", { args: ["60"] }).spawn();
  try {
    const env = { FLORCTL_SSH_CONFIG: sshd.config };
    const ctl = (...args: string[]) => florctl([...args, "--dir", fx.dir], { env });
    // n3: its ssh target refuses connections.
    const add = await ctl(
      "node",
      "add",
      "n3",
      "--endpoint",
      `127.0.0.1:${freeUdpPort()}`,
      "--ssh",
      `root@127.0.0.1:${freeTcpPort()}`,
    );
    assert.equal(add.code, 0, add.stderr);
    // n1 and n2 "enrolled" with --init none under their own prefixes, reached through sshd;
    // no agent is started, so neither answers over the mesh.
    const prefix = (n: string) => join(fx.root, `host-${n}`);
    const file = join(fx.dir, "cluster.yaml");
    const doc = YAML.parseDocument(await Deno.readTextFile(file));
    for (const n of ["n1", "n2", "n3"]) {
      if (n !== "n3") doc.setIn(["nodes", n, "ssh"], sshd.host);
      doc.setIn(["nodes", n, "install"], { prefix: prefix(n), init: "none", os: "linux" });
    }
    await Deno.writeTextFile(file, doc.toString({ lineWidth: 0 }));
    const pidFile = (n: string) => join(prefix(n), "var/lib/florete/flor.pid");
    const gone = new Deno.Command("true").spawn();
    await gone.status;
    for (const [n, pid] of [["n1", silent.pid], ["n2", gone.pid]] as const) {
      await Deno.mkdir(join(prefix(n), "var/lib/florete"), { recursive: true });
      await Deno.writeTextFile(pidFile(n), `${pid}\n`);
    }

    const r = await ctl("doctor", "--json");
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout) as DoctorReport;
    const reach = (n: string) =>
      report.checks.find((c) => c.check === "node_reachable" && c.subject === n)!;
    for (const n of ["n1", "n2", "n3"]) assert.equal(reach(n).verdict, "fail", n);
    assert.match(reach("n1").detail, new RegExp(`agent runs \\(pid ${silent.pid}\\)`));
    assert.match(reach("n1").detail, /does not answer on UDP .*: UDP is blocked/);
    assert.match(reach("n1").fix, new RegExp(`open UDP port ${fx.ports.n1}`));
    assert.match(reach("n2").detail, new RegExp(`agent down: no process with pid ${gone.pid}`));
    assert.match(reach("n2").fix, /florctl enroll node n2/);
    assert.match(reach("n3").detail, /ssh to root@127\.0\.0\.1:\d+ failed too/);
  } finally {
    try {
      silent.kill("SIGKILL");
    } catch {
      // exited already
    }
    await silent.status;
    await sshd.stop();
    await fx.cleanup();
  }
});

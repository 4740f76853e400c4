/** The ssh agent probe's scripts per supervisor and the parsing of their output. */
import assert from "node:assert/strict";
import { agentProbeScript, parseAgentProbe } from "../../../ctl/support/agent_probe.ts";
import { nodePaths } from "../../../lib/platform.ts";

Deno.test("doctor: agent probe scripts per supervisor, and their output", () => {
  const paths = nodePaths("linux", "/tmp/h1");
  const none = agentProbeScript("none", paths);
  assert.match(none, /cat '\/tmp\/h1\/var\/lib\/florete\/flor\.pid'/);
  assert.match(none, /kill -0 "\$pid"/);
  assert.match(agentProbeScript("systemd", paths), /systemctl is-active flor\.service/);
  assert.match(agentProbeScript("launchd", paths), /launchctl print system\/dev\.florete\.flor/);
  assert.deepEqual(parseAgentProbe("noise\nflorete-probe: running pid 12\n"), {
    kind: "running",
    detail: "pid 12",
  });
  assert.deepEqual(parseAgentProbe("florete-probe: down systemctl says flor.service is failed"), {
    kind: "down",
    detail: "systemctl says flor.service is failed",
  });
  assert.equal(parseAgentProbe("sh: 1: systemctl: not found"), undefined);
});

/**
 * Policy tests in cluster.yaml (`tests:`, as in Tailscale's ACL tests): each names a
 * principal, the services it must reach and those it must not. `florctl check` and
 * `florctl deploy` evaluate them with the agents' own rule (lib/policy.ts), so a change to
 * groups or allow lists that breaks one stops before any node sees it.
 *
 * Agents never evaluate them: a node must not refuse its map over an operator's test.
 * Pure: text and cluster in, problems out.
 */

import YAML from "yaml";
import {
  allowEntryString,
  checkCluster,
  type Cluster,
  type ClusterCheck,
  hasPrincipal,
} from "./cluster.ts";
import {
  closestMatch,
  type ConfigPath,
  type ConfigProblem,
  locate,
  problemAt,
  sortProblems,
} from "./config_problems.ts";
import { type Principal, principalString } from "./identity.ts";
import { grantingEntries } from "./policy.ts";

/** checkCluster, then the policy tests of a cluster that passed it. */
export function checkClusterAndTests(text: string, file: string): ClusterCheck {
  const checked = checkCluster(text, file);
  if (checked.cluster === undefined) return checked;
  const failed = policyTestProblems(checked.cluster, text, file);
  const problems = [...checked.problems, ...failed];
  return failed.length ? { problems } : { cluster: checked.cluster, problems };
}

/** One problem per failed expectation or unknown name, located at the test entry. */
export function policyTestProblems(cluster: Cluster, text: string, file: string): ConfigProblem[] {
  if (cluster.tests.length === 0) return [];
  const lineCounter = new YAML.LineCounter();
  const doc = YAML.parseDocument(text, { lineCounter });
  const found: ConfigProblem[] = [];
  const report = (path: ConfigPath, message: string) =>
    found.push(problemAt(file, doc, lineCounter, path, message));
  const lineOf = (path: ConfigPath) => locate(doc, lineCounter, path).line;

  cluster.tests.forEach((test, i) => {
    const principal = test.principal;
    const who = principalString(principal);
    const problem = _principalProblem(cluster, principal);
    if (problem !== undefined) {
      report(["tests", i, "principal"], problem);
      return;
    }
    for (const expect of ["reach", "deny"] as const) {
      test[expect].forEach((service, j) => {
        const at = ["tests", i, expect, j];
        if (!Object.hasOwn(cluster.services, service)) {
          report(at, `service '${service}' is not defined${_didYouMean(service, cluster)}`);
          return;
        }
        const via = grantingEntries(cluster, principal, service);
        const allowLine = lineOf(["services", service, "allow"]);
        if (expect === "reach" && via.length === 0) {
          report(
            at,
            `test failed: ${who} cannot reach '${service}': services.${service}.allow ` +
              `(line ${allowLine}) does not admit it; add ${who}` +
              (principal.kind === "user" && cluster.users[principal.name].groups.length
                ? ` or one of its groups (${cluster.users[principal.name].groups.join(", ")})`
                : "") +
              ", or change the test if the change was meant",
          );
        } else if (expect === "deny" && via.length > 0) {
          report(
            at,
            `test failed: ${who} can reach '${service}' through ${
              via.map(allowEntryString).join(", ")
            } in ` +
              `services.${service}.allow (line ${allowLine}); remove that entry, or change the ` +
              "test if the change was meant",
          );
        }
      });
    }
  });
  return sortProblems(found);
}

function _principalProblem(cluster: Cluster, p: Principal): string | undefined {
  if (p.kind === "node") {
    return `nodes are never admitted by allow lists, so a test of node:${p.name} always ` +
      "holds; test the service identity of a node's workload (service:NAME) instead";
  }
  if (hasPrincipal(cluster, p)) return undefined;
  const names = Object.keys(
    p.kind === "user" ? cluster.users : p.kind === "service" ? cluster.services : cluster.gateways,
  );
  const close = closestMatch(p.name, names);
  return `${p.kind} '${p.name}' is not defined, so the test cannot hold; fix the name` +
    (close === undefined ? "" : ` (did you mean '${p.kind}:${close}'?)`) +
    " or remove the test";
}

function _didYouMean(service: string, cluster: Cluster): string {
  const close = closestMatch(service, Object.keys(cluster.services));
  return close === undefined ? "; fix the name" : ` (did you mean '${close}'?)`;
}

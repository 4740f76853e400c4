/**
 * `florctl enroll node <name>`: install, configure and start flor on a node's host over
 * SSH, and succeed only when the node answers over the mesh with its identity and the
 * expected config hash. Re-running is safe: unchanged files are not rewritten and a running
 * agent whose files did not change is left alone; a new binary is an upgrade.
 *
 * `florctl enroll user <name> --out FILE`: the user's whole bundle in one file, for
 * `flor join FILE` on their machine.
 */
import { principalString } from "../lib/identity.ts";
import { entryOf } from "../lib/cluster.ts";
import { formatHostPort } from "../lib/host_port.ts";
import { sha256Hex } from "../lib/sha256.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type NodePaths, releaseArchiveName, targetName } from "../lib/platform.ts";
import { VERSION } from "../lib/version.ts";
import { posix } from "node:path";
import { encodeBundleFile } from "../lib/bundle_file.ts";
import { installedChoice, makeBundle } from "./bundle.ts";
import {
  type ClusterDir,
  CtlError,
  openClusterDir,
  saveClusterDir,
  writeFileAtomic,
} from "./cluster_dir.ts";
import { operator } from "./operator.ts";
import { KEY_MODE } from "./pki_store.ts";
import {
  type Action,
  controlScript,
  defaultInit,
  detectTarget,
  hashScript,
  type Init,
  installedFiles,
  installReleaseScript,
  parseHashes,
  releaseDirs,
  rollbackScript,
  writeScript,
} from "./remote_node.ts";
import {
  shellQuote,
  type SshContext,
  sshContext,
  sshScript,
  sshScriptOk,
  type SshTarget,
  upload,
} from "./ssh.ts";

export interface EnrollNodeOptions {
  dir: string;
  binary?: string;
  prefix?: string;
  init?: Init;
  socks?: string;
  metrics?: string;
  sshConfig?: string;
  as?: string;
}

const REPO = fileURLToPath(new URL("..", import.meta.url));

/** How long a node may take to come up and answer with the new config. */
export const VERIFY_TIMEOUT_MS = 15_000;

export async function enrollNode(name: string, o: EnrollNodeOptions) {
  let cd = await openClusterDir(o.dir);
  const entry = entryOf(cd.cluster.nodes, name);
  if (!entry) {
    throw new CtlError(`node ${name} is not in ${cd.file}: add it with \`florctl node add\``);
  }
  if (!entry.ssh) {
    throw new CtlError(
      `node ${name} has no ssh target: add one (ssh: root@host) to nodes.${name} in ${cd.file}`,
    );
  }
  const ssh = sshContext(o.sshConfig);
  const target = entry.ssh;
  const say = (s: string) => console.log(`${name}: ${s}`);

  const platform = await detectTarget(ssh, target);
  say(`${formatTarget(target)} is ${targetName(platform)}`);
  const init = o.init ?? entry.install?.init ?? defaultInit(platform.os);
  const prefix = o.prefix ?? entry.install?.prefix ?? "/";
  const release = o.binary ?? await releaseArchive(targetName(platform));
  const releaseKind = /\.(tar\.gz|tgz)$/.test(release) ? "archive" : "binary";

  // Record where flor lives on this node, so deploy knows where to push and how to reload.
  const install = {
    prefix,
    init,
    os: platform.os,
    ...optional("socks", o.socks ?? entry.install?.socks),
    ...optional("metrics", o.metrics ?? entry.install?.metrics),
  };
  if (JSON.stringify(install) !== JSON.stringify(entry.install)) {
    const node = cd.doc.createNode(install) as { flow?: boolean };
    node.flow = false;
    cd.doc.setIn(["nodes", name, "install"], node);
    await saveClusterDir(cd);
    cd = await openClusterDir(o.dir);
  }

  const bundle = await makeBundle(cd, "node", name, installedChoice(cd, name));
  const { paths, files } = installedFiles(platform.os, prefix, init, bundle.files);
  const dirs = releaseDirs(paths);
  // One round trip: the installed release's stamp, then the bundle files' hashes.
  const installed = await sshScriptOk(
    ssh,
    target,
    "reading installed files",
    `cat ${shellQuote(dirs.stamp)} 2>/dev/null || true\n` + hashScript(files.map((f) => f.path)),
  );
  const remote = parseHashes(installed);
  const installedRelease = /^[0-9a-f]{64}$/m.exec(installed)?.[0];
  const releaseHash = await sha256Hex(await Deno.readFile(release));
  const upgrade = installedRelease !== releaseHash;
  const changed = [];
  for (const f of files) if (remote.get(f.path) !== await sha256Hex(f.data)) changed.push(f);

  if (upgrade) {
    say(`installing ${release} into ${paths.bin}`);
    await sshScriptOk(
      ssh,
      target,
      "preparing directories",
      `mkdir -p ${shellQuote(posix.dirname(paths.bin))}\n`,
    );
    await upload(ssh, target, release, dirs.upload);
    await sshScriptOk(
      ssh,
      target,
      "installing the release",
      installReleaseScript(paths, releaseKind, releaseHash),
    );
  }
  if (changed.length) {
    say(`writing ${changed.map((f) => f.path).join(", ")}`);
    const keep = bundle.files.filter((f) => /^(certs|keys|secrets)\//.test(f.path)).map((f) =>
      f.path
    );
    await sshScriptOk(ssh, target, "writing the bundle", writeScript(changed, paths.config, keep));
  }
  const action: Action = upgrade || changed.length ? "restart" : "ensure-running";
  await sshScriptOk(ssh, target, `${action} (${init})`, controlScript(init, paths, action));
  say(action === "restart" ? `flor (re)started under ${init}` : "unchanged; flor is running");

  try {
    await verifyNode(cd, name, bundle.configHash, o.as);
  } catch (e) {
    const why = `${(e as Error).message}\n${await remoteLogTail(ssh, target, init, paths)}`;
    if (!upgrade) throw new CtlError(why);
    // A new release that does not come up is taken back: the node keeps serving.
    const back = await sshScript(ssh, target, rollbackScript(paths));
    if (back.code !== 0) throw new CtlError(`${why}\nno previous release to roll back to`);
    await sshScriptOk(ssh, target, "restart (rollback)", controlScript(init, paths, "restart"));
    try {
      await verifyNode(cd, name, bundle.configHash, o.as);
    } catch (e2) {
      throw new CtlError(
        `${why}\nrolled back, but the previous release failed too: ${(e2 as Error).message}`,
      );
    }
    say(
      `upgrade failed; rolled back to the previous release, which serves config ${bundle.configHash}`,
    );
    throw new CtlError(`upgrade of ${name} to ${release} failed and was rolled back:\n${why}`);
  }
  say(`enrolled: answers over the mesh as node:${name} with config ${bundle.configHash}`);
}

function optional<K extends string>(key: K, value: string | undefined) {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: string };
}

/** The agent's last log lines on the node, to explain why it did not come up. */
export async function remoteLogTail(
  ssh: SshContext,
  target: SshTarget,
  init: Init,
  paths: NodePaths,
): Promise<string> {
  const cmd = init === "systemd"
    ? "journalctl -u flor.service -n 15 --no-pager 2>&1"
    : `tail -n 15 ${shellQuote(paths.log)} 2>&1`;
  const r = await sshScript(ssh, target, cmd + "\n").catch(() => undefined);
  return r ? `last lines of the agent's log on the node:\n${r.stdout.trimEnd()}` : "";
}

/** Polls the node's status over the mesh until it reports `configHash`. */
export async function verifyNode(
  cd: ClusterDir,
  name: string,
  configHash: string,
  as?: string,
  timeoutMs = VERIFY_TIMEOUT_MS,
) {
  const op = await operator(cd, as);
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    try {
      const s = await op.query(name);
      if (s.node !== name) {
        throw new CtlError(
          `the agent at ${formatHostPort(cd.cluster.nodes[name].endpoint)} says it is ${s.node}`,
        );
      }
      if (s.config_hash === configHash) return s;
      last = `it runs config ${s.config_hash}, expected ${configHash}`;
    } catch (e) {
      if (e instanceof CtlError) throw e;
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new CtlError(`node ${name} did not come up with the new config: ${last}`);
}

/** The release archive for the node's target from dist/, built with `deno task dist` when
 * missing (from a source checkout). */
async function releaseArchive(target: string): Promise<string> {
  const path = join(REPO, "dist", releaseArchiveName(VERSION, target));
  if (await Deno.stat(path).then(() => true, () => false)) return path;
  const tool = join(REPO, "tools", "dist.ts");
  if (await Deno.stat(tool).then(() => true, () => false)) {
    console.log(
      `building ${releaseArchiveName(VERSION, target)} (deno task dist --target ${target})`,
    );
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--config", join(REPO, "deno.json"), tool, "--target", target],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (r.success && await Deno.stat(path).then(() => true, () => false)) return path;
  }
  throw new CtlError(
    `no release for ${target} (${path}): build it with \`deno task dist --target ${target}\` ` +
      `on a machine with this checkout, or pass --binary FILE (a flor executable or a release archive)`,
  );
}

function formatTarget(t: SshTarget): string {
  return t.user ? `${t.user}@${t.host}` : t.host;
}

/** `florctl enroll user <name> --out FILE`. */
export async function enrollUser(
  name: string,
  o: { dir: string; out: string; socks?: string; metrics?: string },
) {
  const cd = await openClusterDir(o.dir);
  const bundle = await makeBundle(cd, "user", name, { socks: o.socks, metrics: o.metrics });
  const text = encodeBundleFile({
    principal: principalString({ kind: "user", name }),
    cluster: cd.cluster.cluster,
    files: bundle.files,
  });
  await writeFileAtomic(o.out, text, KEY_MODE);
  for (const n of bundle.notes) console.log(n);
  console.log(
    `${o.out}: everything user:${name} needs (0600, it holds their key). ` +
      `On their machine: flor join ${o.out} && flor run`,
  );
}

/**
 * `florctl enroll node <name>`: install, configure and start flor on a node's host over
 * SSH, and succeed only when the node answers over the mesh with its identity and the
 * expected config hash. Re-running is safe: unchanged files are not rewritten and a running
 * agent whose files did not change is left alone; a new binary is an upgrade.
 *
 * `florctl enroll user <name> --out FILE`: the user's whole bundle in one file, for
 * `flor join FILE` on their machine.
 */
import { entryOf } from "../../lib/cluster.ts";
import { principalString } from "../../lib/identity.ts";
import { sha256Hex } from "../../lib/sha256.ts";
import { exists } from "../../lib/file_exists.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type NodePaths, releaseArchiveName, targetName } from "../../lib/platform.ts";
import { VERSION } from "../../lib/version.ts";
import { posix } from "node:path";
import { encodeBundleFile } from "../../lib/bundle_file.ts";
import { installedChoice, makeBundle } from "../support/bundle_files.ts";
import {
  type ClusterDir,
  openClusterDir,
  saveClusterDir,
  writeFileAtomic,
} from "../support/cluster_dir.ts";
import { CtlError } from "../support/ctl_error.ts";
import { remoteLogTail, verifyNode } from "../support/node_verify.ts";
import { KEY_MODE } from "../support/pki_store.ts";
import {
  type Action,
  changedFiles,
  controlScript,
  defaultInit,
  detectTarget,
  hashScript,
  type Init,
  installedFiles,
  installReleaseScript,
  keptPaths,
  parseHashes,
  releaseDirs,
  rollbackScript,
  writeScript,
} from "../support/remote_node.ts";
import {
  shellQuote,
  type SshContext,
  sshContext,
  sshScript,
  sshScriptOk,
  type SshTarget,
  upload,
} from "../support/ssh.ts";

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

const REPO = fileURLToPath(new URL("../..", import.meta.url));

export async function enrollNode(name: string, o: EnrollNodeOptions) {
  let cd = await openClusterDir(o.dir);
  const entry = _nodeWithSsh(cd, name);
  const remote = { ssh: sshContext(o.sshConfig), target: entry.ssh };
  const { ssh, target } = remote;
  const say = (s: string) => console.log(`${name}: ${s}`);

  const platform = await detectTarget(ssh, target);
  say(`${formatTarget(target)} is ${targetName(platform)}`);
  const init = o.init ?? entry.install?.init ?? defaultInit(platform.os);
  const prefix = o.prefix ?? entry.install?.prefix ?? "/";
  const release = o.binary ?? await releaseArchive(targetName(platform));

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
  const releaseHash = await sha256Hex(await Deno.readFile(release));
  const upgrade = /^[0-9a-f]{64}$/m.exec(installed)?.[0] !== releaseHash;
  const changed = await changedFiles(files, parseHashes(installed));

  if (upgrade) await _installRelease(remote, paths, release, releaseHash, say);
  if (changed.length) {
    say(`writing ${changed.map((f) => f.path).join(", ")}`);
    const keep = keptPaths(bundle.files);
    await sshScriptOk(ssh, target, "writing the bundle", writeScript(changed, paths.config, keep));
  }
  const action: Action = upgrade || changed.length ? "restart" : "ensure-running";
  await sshScriptOk(ssh, target, `${action} (${init})`, controlScript(init, paths, action));
  say(action === "restart" ? `flor (re)started under ${init}` : "unchanged; flor is running");

  await _verifyOrRollBack(cd, name, bundle.configHash, o.as, {
    ...remote,
    init,
    paths,
    upgrade: upgrade ? release : undefined,
    say,
  });
  say(`enrolled: answers over the mesh as node:${name} with config ${bundle.configHash}`);
}

/** The node's entry, which must exist and name an ssh target. */
function _nodeWithSsh(cd: ClusterDir, name: string) {
  const entry = entryOf(cd.cluster.nodes, name);
  if (!entry) {
    throw new CtlError(`node ${name} is not in ${cd.file}: add it with \`florctl node add\``);
  }
  const ssh = entry.ssh;
  if (!ssh) {
    throw new CtlError(
      `node ${name} has no ssh target: add one (ssh: root@host) to nodes.${name} in ${cd.file}`,
    );
  }
  return { ...entry, ssh };
}

interface Remote {
  ssh: SshContext;
  target: SshTarget;
}

/** Uploads the release and unpacks it as the running one (the previous kept for rollback). */
async function _installRelease(
  { ssh, target }: Remote,
  paths: NodePaths,
  release: string,
  releaseHash: string,
  say: (s: string) => void,
) {
  say(`installing ${release} into ${paths.bin}`);
  await sshScriptOk(
    ssh,
    target,
    "preparing directories",
    `mkdir -p ${shellQuote(posix.dirname(paths.bin))}\n`,
  );
  await upload(ssh, target, release, releaseDirs(paths).upload);
  const kind = /\.(tar\.gz|tgz)$/.test(release) ? "archive" : "binary";
  await sshScriptOk(
    ssh,
    target,
    "installing the release",
    installReleaseScript(paths, kind, releaseHash),
  );
}

interface Installed extends Remote {
  init: Init;
  paths: NodePaths;
  /** The release just installed, when this enroll was an upgrade. */
  upgrade?: string;
  say: (s: string) => void;
}

/** Succeeds when the node answers with `configHash`. Otherwise the agent's log explains why,
 * and a new release that does not come up is taken back so the node keeps serving. */
async function _verifyOrRollBack(
  cd: ClusterDir,
  name: string,
  configHash: string,
  as: string | undefined,
  r: Installed,
) {
  try {
    await verifyNode(cd, name, configHash, as);
    return;
  } catch (e) {
    const why = `${(e as Error).message}\n${await remoteLogTail(r.ssh, r.target, r.init, r.paths)}`;
    if (r.upgrade === undefined) throw new CtlError(why);
    const back = await sshScript(r.ssh, r.target, rollbackScript(r.paths));
    if (back.code !== 0) throw new CtlError(`${why}\nno previous release to roll back to`);
    await sshScriptOk(
      r.ssh,
      r.target,
      "restart (rollback)",
      controlScript(r.init, r.paths, "restart"),
    );
    try {
      await verifyNode(cd, name, configHash, as);
    } catch (e2) {
      throw new CtlError(
        `${why}\nrolled back, but the previous release failed too: ${(e2 as Error).message}`,
      );
    }
    r.say(`upgrade failed; rolled back to the previous release, which serves config ${configHash}`);
    throw new CtlError(`upgrade of ${name} to ${r.upgrade} failed and was rolled back:\n${why}`);
  }
}

function optional<K extends string>(key: K, value: string | undefined) {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: string };
}

/** The release archive for the node's target from dist/, built with `deno task dist` when
 * missing (from a source checkout). */
async function releaseArchive(target: string): Promise<string> {
  const path = join(REPO, "dist", releaseArchiveName(VERSION, target));
  if (await exists(path)) return path;
  const tool = join(REPO, "tools", "dist.ts");
  if (await exists(tool)) {
    console.log(
      `building ${releaseArchiveName(VERSION, target)} (deno task dist --target ${target})`,
    );
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--config", join(REPO, "deno.json"), tool, "--target", target],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (r.success && await exists(path)) return path;
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

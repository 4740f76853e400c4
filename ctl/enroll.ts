/**
 * `florctl enroll node <name>`: install, configure and start flor on a node's host over
 * SSH, and succeed only when the node answers over the mesh with its identity and the
 * expected config hash. Re-running is safe: unchanged files are not rewritten and a running
 * agent whose files did not change is left alone; a new binary is an upgrade.
 *
 * `florctl enroll user <name> --out FILE`: the user's whole bundle in one file, for
 * `flor join FILE` on their machine.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type NodePaths, targetName } from "../lib/platform.ts";
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
  parseHashes,
  sha256Hex,
  writeScript,
} from "./remote_node.ts";
import {
  parseSshTarget,
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
export const VERIFY_TIMEOUT_MS = 30_000;

export async function enrollNode(name: string, o: EnrollNodeOptions) {
  let cd = await openClusterDir(o.dir);
  const entry = cd.cluster.nodes[name];
  if (!entry) {
    throw new CtlError(`node ${name} is not in ${cd.file}: add it with \`florctl node add\``);
  }
  if (!entry.ssh) {
    throw new CtlError(
      `node ${name} has no ssh target: add one (ssh: root@host) to nodes.${name} in ${cd.file}`,
    );
  }
  const ssh = sshContext(o.sshConfig);
  const target = parseSshTarget(entry.ssh);
  const say = (s: string) => console.log(`${name}: ${s}`);

  const platform = await detectTarget(ssh, target);
  say(`${formatTarget(target)} is ${targetName(platform)}`);
  const init = o.init ?? entry.install?.init ?? defaultInit(platform.os);
  const prefix = o.prefix ?? entry.install?.prefix ?? "/";
  const binary = o.binary ?? await releaseBinary(targetName(platform));

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
  const remote = parseHashes(
    await sshScriptOk(
      ssh,
      target,
      "reading installed files",
      hashScript([
        paths.binary,
        ...files.map((f) => f.path),
      ]),
    ),
  );
  const binaryHash = await sha256Hex(await Deno.readFile(binary));
  const binaryChanged = remote.get(paths.binary) !== binaryHash;
  const changed = [];
  for (const f of files) if (remote.get(f.path) !== await sha256Hex(f.data)) changed.push(f);

  if (binaryChanged) {
    say(`installing ${binary} as ${paths.binary}`);
    await sshScriptOk(ssh, target, "preparing directories", `mkdir -p '${paths.bin}'\n`);
    await upload(ssh, target, binary, `${paths.binary}.new`);
    // The running version stays beside the new one for rollback.
    await sshScriptOk(
      ssh,
      target,
      "installing the binary",
      `set -e; chmod 755 '${paths.binary}.new'; ` +
        `if [ -f '${paths.binary}' ]; then cp -p '${paths.binary}' '${paths.previous}'; fi; ` +
        `mv -f '${paths.binary}.new' '${paths.binary}'\n`,
    );
  }
  if (changed.length) {
    say(`writing ${changed.map((f) => f.path).join(", ")}`);
    const keep = bundle.files.filter((f) => /^(certs|keys|secrets)\//.test(f.path)).map((f) =>
      f.path
    );
    await sshScriptOk(ssh, target, "writing the bundle", writeScript(changed, paths.config, keep));
  }
  const action: Action = binaryChanged || changed.length ? "restart" : "ensure-running";
  await sshScriptOk(ssh, target, `${action} (${init})`, controlScript(init, paths, action));
  say(action === "restart" ? `flor (re)started under ${init}` : "unchanged; flor is running");

  try {
    await verifyNode(cd, name, bundle.configHash, o.as);
  } catch (e) {
    throw new CtlError(`${(e as Error).message}\n${await remoteLogTail(ssh, target, init, paths)}`);
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
        throw new CtlError(`the agent at ${cd.cluster.nodes[name].endpoint} says it is ${s.node}`);
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

async function releaseBinary(target: string): Promise<string> {
  const exe = target.startsWith("windows") ? "flor.exe" : "flor";
  const path = join(REPO, "dist", "compile", target, exe);
  try {
    await Deno.stat(path);
    return path;
  } catch {
    throw new CtlError(
      `no flor executable for ${target} at ${path}: build it with ` +
        `\`deno task compile --target ${target}\`, or pass --binary PATH`,
    );
  }
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
    principal: `user:${name}`,
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

/**
 * `florctl rotate` and `florctl revoke` through the real CLI (a `deno run ctl/main.ts`
 * process per command) on a temporary cluster directory.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadCluster } from "../../../lib/cluster.ts";
import { principalString } from "../../../lib/identity.ts";
import { normalizeSerial, parseCertificate } from "../../../lib/pki.ts";
import { exists } from "../../../lib/file_exists.ts";
import { florctl, florctlOk, serviceAddArgs } from "../../e2e/harness.ts";

const DAY_MS = 86_400_000;

interface TestCluster {
  root: string;
  dir: string;
  /** florctl with `--dir` of this cluster; must succeed; returns stdout. */
  ok(...args: string[]): Promise<string>;
  run(...args: string[]): ReturnType<typeof florctl>;
}

/** acme with node n1, user alice and service web on n1 (alice allowed), both bundled. */
async function makeCluster(): Promise<TestCluster> {
  const root = await Deno.makeTempDir({ prefix: "florete-rotate-" });
  const dir = join(root, "cluster");
  const tc: TestCluster = {
    root,
    dir,
    ok: (...args) => florctlOk([...args, "--dir", dir]),
    run: (...args) => florctl([...args, "--dir", dir]),
  };
  await tc.ok("init", "acme");
  await tc.ok("node", "add", "n1", "--endpoint", "127.0.0.1:7101");
  await tc.ok("user", "add", "alice");
  await tc.ok(...serviceAddArgs("web", "n1", "127.0.0.1:8080", "user:alice"));
  await tc.ok("bundle", "node", "n1", "--out", join(root, "B1"));
  await tc.ok("bundle", "user", "alice", "--out", join(root, "BA"));
  return tc;
}

async function withCluster(fn: (tc: TestCluster) => Promise<void>) {
  const tc = await makeCluster();
  try {
    await fn(tc);
  } finally {
    await Deno.remove(tc.root, { recursive: true }).catch(() => {});
  }
}

async function certAt(path: string) {
  const pem = await Deno.readTextFile(path);
  const cert = parseCertificate(pem);
  return { pem, cert, serial: normalizeSerial(cert.serialNumber) };
}

/** Current certificate of a principal in the operator's pki/. */
const pkiCert = (tc: TestCluster, kind: string, name: string) =>
  certAt(join(tc.dir, "pki", kind, `${name}.crt`));

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

async function readCluster(tc: TestCluster) {
  const file = join(tc.dir, "cluster.yaml");
  return loadCluster(await Deno.readTextFile(file), file);
}

const utcDay = (d: Date) => d.toISOString().slice(0, 10);

Deno.test("rotate: nothing expires within 30d", async () => {
  await withCluster(async (tc) => {
    const before = await Promise.all([
      pkiCert(tc, "node", "n1"),
      pkiCert(tc, "service", "web"),
      pkiCert(tc, "user", "alice"),
    ]);
    const out = await tc.ok("rotate", "--within", "30d");
    assert.match(out, /nothing expires within 30d/);
    assert.doesNotMatch(out, /renewed/);
    // The default window is 30 days as well.
    assert.match(await tc.ok("rotate"), /nothing expires within 30d/);
    const after = await Promise.all([
      pkiCert(tc, "node", "n1"),
      pkiCert(tc, "service", "web"),
      pkiCert(tc, "user", "alice"),
    ]);
    assert.deepEqual(after.map((c) => c.serial), before.map((c) => c.serial));
    assert.deepEqual(await listDir(join(tc.dir, "pki", "user")), ["alice.crt", "alice.key"]);
  });
});

Deno.test("rotate: --within 400d renews node, service and user, keeping the old certs", async () => {
  await withCluster(async (tc) => {
    const old = {
      node: await pkiCert(tc, "node", "n1"),
      service: await pkiCert(tc, "service", "web"),
      user: await pkiCert(tc, "user", "alice"),
    };
    const oldUserKey = await Deno.readTextFile(join(tc.dir, "pki", "user", "alice.key"));
    // The operator has no certificate until something bundles one for it.
    assert.equal(await exists(join(tc.dir, "pki", "user", "admin.crt")), false);

    const started = Date.now();
    const out = await tc.ok("rotate", "--within", "400d");
    const renewed = [...out.matchAll(/^renewed (\S+): valid until (\d{4}-\d{2}-\d{2})$/gm)];
    assert.deepEqual(renewed.map((m) => m[1]).sort(), ["node:n1", "service:web", "user:alice"]);
    assert.doesNotMatch(out, /user:admin/);
    assert.match(
      out,
      /^ {2}give alice a new file: florctl enroll user alice --out alice\.flor$/m,
    );
    assert.match(out, /run `florctl deploy`/);
    assert.doesNotMatch(out, /nothing expires/);

    for (
      const [kind, name, days] of [["node", "n1", 365], ["service", "web", 365], [
        "user",
        "alice",
        90,
      ]] as const
    ) {
      const was = old[kind];
      const now = await pkiCert(tc, kind, name);
      assert.notEqual(now.serial, was.serial, `${kind}:${name} has a new serial`);
      const expiry = now.cert.notAfter.getTime();
      assert.ok(Math.abs(expiry - (started + days * DAY_MS)) < DAY_MS, `${kind}:${name} lifetime`);
      const line = renewed.find((m) => m[1] === `${kind}:${name}`)!;
      assert.equal(line[2], utcDay(now.cert.notAfter));
      // The replaced certificate stays, named by its serial, unchanged.
      const archived = join(tc.dir, "pki", kind, `${name}.${was.serial}.crt`);
      assert.equal(await Deno.readTextFile(archived), was.pem);
    }
    assert.notEqual(
      await Deno.readTextFile(join(tc.dir, "pki", "user", "alice.key")),
      oldUserKey,
      "a new key comes with the new certificate",
    );
    assert.deepEqual(await listDir(join(tc.dir, "pki", "user")), [
      `alice.${old.user.serial}.crt`,
      "alice.crt",
      "alice.key",
    ]);

    // Bundling again hands out the renewed certificates.
    await tc.ok("bundle", "node", "n1", "--out", join(tc.root, "B1"));
    await tc.ok("bundle", "user", "alice", "--out", join(tc.root, "BA"));
    const b1 = {
      node: await certAt(join(tc.root, "B1", "certs", "node-n1.crt")),
      service: await certAt(join(tc.root, "B1", "certs", "service-web.crt")),
    };
    const ba = await certAt(join(tc.root, "BA", "certs", "user-alice.crt"));
    assert.equal(b1.node.serial, (await pkiCert(tc, "node", "n1")).serial);
    assert.equal(b1.service.serial, (await pkiCert(tc, "service", "web")).serial);
    assert.equal(ba.serial, (await pkiCert(tc, "user", "alice")).serial);
    assert.notEqual(b1.node.serial, old.node.serial);
    assert.notEqual(b1.service.serial, old.service.serial);
    assert.notEqual(ba.serial, old.user.serial);

    // Once renewed, a 30-day window finds nothing left to do.
    assert.match(await tc.ok("rotate", "--within", "30d"), /nothing expires within 30d/);
  });
});

Deno.test("rotate: the operator is renewed only once it has a certificate", async () => {
  await withCluster(async (tc) => {
    await tc.ok("bundle", "user", "admin", "--out", join(tc.root, "BOP"));
    const admin = await pkiCert(tc, "user", "admin");
    const node = await pkiCert(tc, "node", "n1");
    // 100 days: past the users' 90-day certificates, short of the 365-day ones.
    const out = await tc.ok("rotate", "--within", "100d");
    const renewed = [...out.matchAll(/^renewed (\S+):/gm)].map((m) => m[1]).sort();
    assert.deepEqual(renewed, ["user:admin", "user:alice"]);
    assert.match(out, /give admin a new file: florctl enroll user admin/);
    assert.match(out, /give alice a new file: florctl enroll user alice/);
    // Only users renewed: nothing for deploy to deliver.
    assert.doesNotMatch(out, /florctl deploy/);
    assert.notEqual((await pkiCert(tc, "user", "admin")).serial, admin.serial);
    assert.ok(await exists(join(tc.dir, "pki", "user", `admin.${admin.serial}.crt`)));
    assert.equal((await pkiCert(tc, "node", "n1")).serial, node.serial);
  });
});

Deno.test("rotate: a --within that is not a number of days is refused", async () => {
  await withCluster(async (tc) => {
    for (const within of ["3x", "30", "d", "-5d", "1.5d", "30 days"]) {
      const r = await tc.run("rotate", "--within", within);
      assert.equal(r.code, 1, `--within ${within}: ${r.stdout}`);
      assert.match(
        r.stderr,
        new RegExp(
          `florctl: --within ${
            within.replace(/[.]/g, "\\.")
          }: write a number of days, e\\.g\\. 30d`,
        ),
      );
      assert.doesNotMatch(r.stdout, /renewed/);
    }
  });
});

Deno.test("revoke: lists every live certificate of the principal, then re-bundling is fresh", async () => {
  await withCluster(async (tc) => {
    // Two certificates for alice: the rotated-out one (archived) and the current one.
    const first = await pkiCert(tc, "user", "alice");
    await tc.ok("rotate", "--within", "400d");
    const second = await pkiCert(tc, "user", "alice");
    assert.notEqual(first.serial, second.serial);
    const node = await pkiCert(tc, "node", "n1");

    const day = utcDay(new Date());
    const out = await tc.ok("revoke", "user:alice", "--reason", "lost");
    assert.match(out, /^revoked user:alice: /m);
    assert.ok(out.includes(first.serial) && out.includes(second.serial), out);
    assert.match(out, /run `florctl deploy`/);

    const cluster = await readCluster(tc);
    const entries = cluster.revoked.filter((r) => principalString(r.principal) === "user:alice");
    assert.equal(cluster.revoked.length, 2, "only alice's certificates are revoked");
    assert.deepEqual(entries.map((r) => r.serial).sort(), [first.serial, second.serial].sort());
    for (const r of entries) {
      assert.equal(r.reason, "lost");
      assert.ok(r.date === day || r.date === utcDay(new Date()), `date ${r.date}`);
    }
    assert.ok(!cluster.revoked.some((r) => r.serial === node.serial));
    // cluster.yaml is still valid, and the edit kept the file's own comments.
    assert.match(await tc.ok("check"), /cluster\.yaml: ok/);
    assert.match(
      await Deno.readTextFile(join(tc.dir, "cluster.yaml")),
      /^# Florete cluster map: the single source of truth/,
    );

    // Again: nothing new to list, and the file is left as it is.
    const text = await Deno.readTextFile(join(tc.dir, "cluster.yaml"));
    const again = await tc.ok("revoke", "user:alice", "--reason", "lost");
    assert.match(
      again,
      /user:alice: every certificate is already revoked or expired; nothing to do/,
    );
    assert.equal(await Deno.readTextFile(join(tc.dir, "cluster.yaml")), text);

    // A new bundle replaces the revoked certificate with a fresh one.
    const bundled = await tc.ok("bundle", "user", "alice", "--out", join(tc.root, "BA"));
    const fresh = await certAt(join(tc.root, "BA", "certs", "user-alice.crt"));
    assert.match(bundled, new RegExp(`^issued user:alice serial ${fresh.serial}`, "m"));
    assert.ok(![first.serial, second.serial].includes(fresh.serial));
    const revoked = new Set((await readCluster(tc)).revoked.map((r) => r.serial));
    assert.equal(revoked.has(fresh.serial), false, "the fresh certificate is not revoked");
    assert.equal((await pkiCert(tc, "user", "alice")).serial, fresh.serial);
    // ...and the revoked current certificate was archived, not lost.
    assert.ok(await exists(join(tc.dir, "pki", "user", `alice.${second.serial}.crt`)));
    assert.match(await tc.ok("check"), /cluster\.yaml: ok/);
  });
});

Deno.test("revoke: a principal that never had a certificate is refused", async () => {
  await withCluster(async (tc) => {
    const text = await Deno.readTextFile(join(tc.dir, "cluster.yaml"));
    const nobody = await tc.run("revoke", "user:nobody");
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, /florctl: no certificate was ever issued to user:nobody/);
    // In the cluster but never bundled: nothing to revoke either.
    const admin = await tc.run("revoke", "user:admin");
    assert.equal(admin.code, 1);
    assert.match(admin.stderr, /no certificate was ever issued to user:admin/);
    // Not a principal at all.
    const bad = await tc.run("revoke", "alice");
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^florctl: .*alice/m);
    assert.equal(await Deno.readTextFile(join(tc.dir, "cluster.yaml")), text);
  });
});

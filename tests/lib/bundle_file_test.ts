import assert from "node:assert/strict";
import fc from "fast-check";
import {
  BUNDLE_FORMAT,
  type BundleFileContent,
  BundleFileError,
  decodeBundleFile,
  encodeBundleFile,
} from "../../lib/bundle_file.ts";

const ALICE: BundleFileContent = {
  principal: "user:alice",
  cluster: "acme",
  files: [
    { path: "flor.yaml", data: "version: 1\ncluster: acme\n", secret: false },
    {
      path: "ca.crt",
      data: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
      secret: false,
    },
    { path: "cluster.yaml", data: "cluster: acme # «ünïcødé» ✓\n", secret: false },
    { path: "certs/user-alice.crt", data: "cert\n", secret: false },
    { path: "keys/user-alice.key", data: "-----BEGIN PRIVATE KEY-----\nk\n", secret: true },
  ],
};

/** A valid bundle file as a plain object, for tests to break one field at a time. */
function raw(): Record<string, unknown> {
  return JSON.parse(encodeBundleFile(ALICE));
}

function assertRefused(text: string, want: RegExp) {
  assert.throws(() => decodeBundleFile(text), (e) => {
    assert.ok(e instanceof BundleFileError, `expected BundleFileError, got ${e}`);
    assert.equal(e.name, "BundleFileError");
    assert.match(e.message, want);
    return true;
  });
}

Deno.test("bundle_file: encode then decode gives the bundle back", () => {
  const text = encodeBundleFile(ALICE);
  assert.ok(text.endsWith("}\n"));
  assert.equal(JSON.parse(text).format, BUNDLE_FORMAT);
  assert.equal(BUNDLE_FORMAT, "florete-bundle/1");
  assert.deepEqual(decodeBundleFile(text), ALICE);
  // Re-encoding the decoded bundle is byte-for-byte the same file.
  assert.equal(encodeBundleFile(decodeBundleFile(text)), text);
});

Deno.test("bundle_file: any safe bundle round trips (fast-check)", () => {
  const segment = fc.string({
    unit: fc.constantFrom(..."abcXYZ019._-"),
    minLength: 1,
    maxLength: 12,
  }).filter((s) => s !== "." && s !== "..");
  const path = fc.array(segment, { minLength: 1, maxLength: 3 }).map((p) => p.join("/"));
  const entry = fc.record({ path, data: fc.string({ unit: "binary" }), secret: fc.boolean() });
  const bundle = fc.record({
    principal: fc.string(),
    cluster: fc.string(),
    files: fc.array(entry, { maxLength: 5 }),
    florYaml: fc.string({ unit: "binary" }),
  }).map(({ florYaml, files, ...rest }) => ({
    ...rest,
    files: [{ path: "flor.yaml", data: florYaml, secret: false }, ...files],
  }));
  fc.assert(fc.property(bundle, (b) => {
    // Through JSON so fast-check's null-prototype records compare as plain objects.
    assert.deepEqual(decodeBundleFile(encodeBundleFile(b)), JSON.parse(JSON.stringify(b)));
  }));
});

Deno.test("bundle_file: text that is not JSON is refused", () => {
  for (const text of ["", "not json", "flor.yaml: x", "{", '{"format": "florete-bundle/1",}']) {
    assertRefused(text, /^not a Florete bundle file \(not JSON\): ask for a new one$/);
  }
});

Deno.test("bundle_file: JSON that is not a bundle object is refused", () => {
  assertRefused("null", /^not a valid Florete bundle file \(top: .*expected object/);
  assertRefused("[]", /^not a valid Florete bundle file \(top: .*expected object/);
  assertRefused('"florete-bundle/1"', /\(top: .*expected object/);
});

Deno.test("bundle_file: a wrong or missing format string is refused", () => {
  for (const format of ["florete-bundle/2", "florete-bundle/1 ", "", 1, null]) {
    const b = { ...raw(), format };
    assertRefused(
      JSON.stringify(b),
      /^not a valid Florete bundle file \(format: .*florete-bundle\/1/,
    );
  }
  const { format: _f, ...noFormat } = raw();
  assertRefused(JSON.stringify(noFormat), /\(format: /);
});

Deno.test("bundle_file: paths that could leave the install directory are refused", () => {
  for (
    const path of [
      "../x",
      "..",
      "/etc/x",
      "/flor.yaml",
      "a/../../b",
      "certs/../../etc/passwd",
      "certs/..",
      "a/../b",
      "..\\x",
      "C:\\x",
      "~/.ssh/authorized_keys",
      "a b",
      "",
      "certs/\u0000x",
    ]
  ) {
    const b = raw();
    b.files = [...(b.files as unknown[]), { path, data: "x", secret: false }];
    assert.throws(() => decodeBundleFile(JSON.stringify(b)), (e) => {
      assert.ok(e instanceof BundleFileError, JSON.stringify(path));
      assert.match(
        e.message,
        /^not a valid Florete bundle file \(files\.5\.path: bundle paths are relative, without '\.\.'\)$/,
        JSON.stringify(path),
      );
      return true;
    });
  }
  // Dots inside a name are fine.
  const ok = raw();
  ok.files = [...(ok.files as unknown[]), { path: "certs/a..b.crt", data: "", secret: false }];
  assert.equal(decodeBundleFile(JSON.stringify(ok)).files.at(-1)!.path, "certs/a..b.crt");
});

Deno.test("bundle_file: a bundle without flor.yaml is refused", () => {
  const b = raw();
  b.files = (b.files as { path: string }[]).filter((f) => f.path !== "flor.yaml");
  assertRefused(JSON.stringify(b), /^the bundle file has no flor\.yaml$/);
  // flor.yaml in a subdirectory is not the bundle's flor.yaml.
  b.files = [{ path: "certs/flor.yaml", data: "", secret: false }];
  assertRefused(JSON.stringify(b), /no flor\.yaml/);
  b.files = [];
  assertRefused(JSON.stringify(b), /\(files: .*1/);
});

Deno.test("bundle_file: unknown keys are refused, at the top and in a file entry", () => {
  assertRefused(JSON.stringify({ ...raw(), extra: 1 }), /\(top: Unrecognized key: "extra"\)/);
  const b = raw();
  (b.files as Record<string, unknown>[])[2].mode = 0o777;
  assertRefused(JSON.stringify(b), /\(files\.2: Unrecognized key: "mode"\)/);
});

Deno.test("bundle_file: wrong field types name the field", () => {
  const table: [Record<string, unknown>, RegExp][] = [
    [{ ...raw(), principal: 3 }, /\(principal: .*expected string/],
    [{ ...raw(), cluster: undefined }, /\(cluster: .*expected string/],
    [{ ...raw(), files: "flor.yaml" }, /\(files: .*expected array/],
  ];
  for (const [b, want] of table) assertRefused(JSON.stringify(b), want);
  const secret = raw();
  (secret.files as Record<string, unknown>[])[4].secret = "yes";
  assertRefused(JSON.stringify(secret), /\(files\.4\.secret: .*expected boolean/);
  const data = raw();
  (data.files as Record<string, unknown>[])[1].data = null;
  assertRefused(JSON.stringify(data), /\(files\.1\.data: .*expected string/);
});

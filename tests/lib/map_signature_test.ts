import assert from "node:assert/strict";
import { isNewer } from "../../agent/map_refresh.ts";
import {
  decodeMapSignature,
  encodeMapSignature,
  MapSignatureError,
  signClusterMap,
  verifyClusterMap,
} from "../../lib/map_signature.ts";
import { createCa } from "../../lib/pki.ts";

const NOW = new Date("2026-11-25T12:00:00Z");
const ca = await createCa("acme", NOW);
const MAP = "cluster: acme\nnodes: {}\n";

Deno.test("map_signature: the CA's signature verifies and round trips as text", async () => {
  const sig = await signClusterMap(MAP, ca.keys.privateKey, 1234);
  const again = decodeMapSignature(encodeMapSignature(sig));
  assert.deepEqual(again, sig);
  assert.equal(await verifyClusterMap(MAP, again, ca.cert), 1234);
});

Deno.test("map_signature: an altered map, an altered date or another CA is refused", async () => {
  const sig = await signClusterMap(MAP, ca.keys.privateKey, 1234);
  await assert.rejects(() => verifyClusterMap(MAP + "# x\n", sig, ca.cert), MapSignatureError);
  await assert.rejects(
    () => verifyClusterMap(MAP, { ...sig, issued_at: 9999 }, ca.cert),
    /not signed by this cluster's CA/,
  );
  const other = await createCa("acme", NOW);
  await assert.rejects(() => verifyClusterMap(MAP, sig, other.cert), /not signed/);
  await assert.rejects(
    () => verifyClusterMap(MAP, { ...sig, signature: "!!" }, ca.cert),
    MapSignatureError,
  );
});

Deno.test("map_signature: malformed signature files are MapSignatureError", () => {
  for (
    const text of [
      "",
      "{}",
      "[]",
      '{"format":"x"}',
      JSON.stringify({ format: "florete-map-sig/1", issued_at: 1, sha256: "zz", signature: "" }),
    ]
  ) {
    assert.throws(() => decodeMapSignature(text), MapSignatureError, text);
  }
});

Deno.test("map_refresh: only a strictly newer map is adopted", () => {
  assert.equal(isNewer(undefined, 1), true);
  assert.equal(isNewer(5, 6), true);
  assert.equal(isNewer(5, 5), false);
  assert.equal(isNewer(5, 4), false);
});

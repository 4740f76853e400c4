import assert from "node:assert/strict";
import { serviceSpecs } from "./cluster_shape.ts";
import { nodeSpecs } from "./topology.ts";
import { idleRecords } from "./traffic.ts";

const services = serviceSpecs(nodeSpecs(2), 4, "10.1.250.2");
const echo = services.find((s) => s.kind === "echo")!;
const t0 = 1_000_000;

Deno.test("traffic: an idle connection open to the end is one ok record", () => {
  const r = idleRecords(
    [{ ev: "open", user: "u1", service: echo.name, t: t0 + 2000 }],
    services,
    t0,
    60,
  );
  assert.deepEqual(r.map((x) => [x.start_s, x.end_s, x.ok, x.node, x.kind]), [[
    2,
    60,
    true,
    echo.node,
    "idle",
  ]]);
});

Deno.test("traffic: a closed idle connection fails at its close; a refusal is its own record", () => {
  const r = idleRecords(
    [
      { ev: "open", user: "u1", service: echo.name, t: t0 + 2000 },
      { ev: "closed", user: "u1", service: echo.name, t: t0 + 30_000, why: "closed by peer" },
      { ev: "refused", user: "u1", service: echo.name, t: t0 + 32_000, why: "SOCKS reply 2" },
      { ev: "open", user: "u1", service: echo.name, t: t0 + 40_000 },
    ],
    services,
    t0,
    60,
  );
  assert.deepEqual(r.map((x) => [x.start_s, x.end_s, x.ok, x.error]), [
    [2, 30, false, "idle connection closed by peer"],
    [32, 32, false, "idle connection refused: SOCKS reply 2"],
    [40, 60, true, undefined],
  ]);
});

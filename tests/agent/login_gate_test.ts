import assert from "node:assert/strict";
import { LOGIN_FAILURE_BURST, LOGIN_FAILURES_PER_S, LoginGate } from "../../agent/login_gate.ts";

const SRC = "192.168.1.20";

Deno.test("login gate: correct passwords never run out, one after another", () => {
  const gate = new LoginGate();
  for (let i = 0; i < 1000; i++) {
    assert.equal(gate.begin(SRC, 0), "verify", `login ${i}`);
    gate.end(SRC, true, 0);
  }
});

Deno.test("login gate: 200 parallel correct logins from one source all get checked", () => {
  const gate = new LoginGate();
  let waiting = 0;
  let running = 0;
  let verified = 0;
  for (let i = 0; i < 200; i++) {
    const step = gate.begin(SRC, 0);
    assert.notEqual(step, "refuse");
    if (step === "verify") running++;
    else waiting++;
  }
  assert.equal(running, LOGIN_FAILURE_BURST);
  // As each check succeeds its token comes back and a waiting login runs.
  while (running > 0) {
    gate.end(SRC, true, 0);
    running--;
    verified++;
    while (waiting > 0 && gate.begin(SRC, 0) === "verify") {
      waiting--;
      running++;
    }
  }
  assert.equal(verified, 200);
  assert.equal(waiting, 0);
});

Deno.test("login gate: wrong passwords are limited per source, then refused unchecked", () => {
  const gate = new LoginGate();
  for (let i = 0; i < LOGIN_FAILURE_BURST; i++) {
    assert.equal(gate.begin(SRC, 0), "verify");
    gate.end(SRC, false, 0);
  }
  assert.equal(gate.begin(SRC, 0), "refuse");
  // Another source is not affected.
  assert.equal(gate.begin("192.168.1.21", 0), "verify");
  // The bucket refills at LOGIN_FAILURES_PER_S.
  let allowed = 0;
  for (let i = 0; i < 50; i++) {
    if (gate.begin(SRC, 1000) === "verify") {
      allowed++;
      gate.end(SRC, false, 1000);
    }
  }
  assert.equal(allowed, LOGIN_FAILURES_PER_S);
});

Deno.test("login gate: a waiting login is refused once the checks it waited for fail", () => {
  const gate = new LoginGate({ ratePerSecond: 1, burst: 1 });
  assert.equal(gate.begin(SRC, 0), "verify");
  assert.equal(gate.begin(SRC, 0), "wait");
  gate.end(SRC, false, 0);
  assert.equal(gate.begin(SRC, 0), "refuse");
});

Deno.test("login gate: a waiting login runs on the token a correct password gave back", () => {
  const gate = new LoginGate({ ratePerSecond: 1, burst: 1 });
  assert.equal(gate.begin(SRC, 0), "verify");
  assert.equal(gate.begin(SRC, 0), "wait");
  gate.end(SRC, true, 0);
  assert.equal(gate.begin(SRC, 0), "verify");
});

Deno.test("login gate: a guessing flood costs at most burst + rate x seconds checks", () => {
  const gate = new LoginGate();
  let checks = 0;
  const seconds = 60;
  // 100 parallel guesses every 10 ms for a minute, each failing 5 ms after it started.
  let pending: number[] = [];
  for (let now = 0; now <= seconds * 1000; now += 5) {
    for (const _ of pending) gate.end(SRC, false, now);
    pending = [];
    if (now % 10 !== 0) continue;
    for (let i = 0; i < 100; i++) {
      if (gate.begin(SRC, now) === "verify") {
        checks++;
        pending.push(now);
      }
    }
  }
  assert.ok(
    checks <= LOGIN_FAILURE_BURST + LOGIN_FAILURES_PER_S * seconds + 1,
    `${checks} password checks in ${seconds} s`,
  );
});

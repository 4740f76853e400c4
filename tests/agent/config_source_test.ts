import assert from "node:assert/strict";
import { ApplyError, createConfigHolder } from "../../agent/config_source.ts";

interface Cfg {
  v: number;
}

Deno.test("config_source: current() is the initial value until a replace", () => {
  const a = { v: 1 };
  const holder = createConfigHolder<Cfg>(a);
  assert.equal(holder.current(), a);
  const b = { v: 2 };
  holder.replace(b);
  assert.equal(holder.current(), b, "replaced, not mutated");
  assert.deepEqual(a, { v: 1 }, "the old value is left as it was");
});

Deno.test("config_source: subscribers get (next, prev) in the order they subscribed", () => {
  const holder = createConfigHolder<Cfg>({ v: 1 });
  const calls: string[] = [];
  holder.onChange("quic", (next, prev) => {
    assert.equal(holder.current(), next, "the new value is current while subscribers run");
    calls.push(`quic ${prev.v}→${next.v}`);
  });
  holder.onChange("socks", (next, prev) => calls.push(`socks ${prev.v}→${next.v}`));
  holder.onChange("forwards", (next, prev) => calls.push(`forwards ${prev.v}→${next.v}`));
  assert.deepEqual(holder.subscribers(), ["quic", "socks", "forwards"]);
  holder.replace({ v: 2 });
  assert.deepEqual(calls, ["quic 1→2", "socks 1→2", "forwards 1→2"]);
});

Deno.test("config_source: every replace notifies, even with an equal value", () => {
  // The config hash does not cover certificate files; a retried reload re-applies all.
  const holder = createConfigHolder<Cfg>({ v: 1 });
  let n = 0;
  holder.onChange("x", () => n++);
  holder.replace({ v: 1 });
  holder.replace(holder.current());
  assert.equal(n, 2);
});

Deno.test("config_source: an unsubscribed component is not told", () => {
  const holder = createConfigHolder<Cfg>({ v: 1 });
  const seen: number[] = [];
  const off = holder.onChange("gone", (next) => seen.push(next.v));
  holder.replace({ v: 2 });
  off();
  holder.replace({ v: 3 });
  assert.deepEqual(seen, [2]);
  assert.deepEqual(holder.subscribers(), []);
});

Deno.test("config_source: a throwing subscriber undoes the swap for everyone", () => {
  const old = { v: 1 };
  const holder = createConfigHolder<Cfg>(old);
  const calls: string[] = [];
  holder.onChange("quic", (next, prev) => calls.push(`quic ${prev.v}→${next.v}`));
  holder.onChange("socks", (next, prev) => {
    calls.push(`socks ${prev.v}→${next.v}`);
    if (next.v === 2) throw new Error("cannot use v2");
  });
  holder.onChange("forwards", (next, prev) => calls.push(`forwards ${prev.v}→${next.v}`));
  assert.throws(() => holder.replace({ v: 2 }), (e: unknown) => {
    assert.ok(e instanceof ApplyError);
    assert.equal(e.subscriber, "socks");
    assert.deepEqual(e.undoFailures, []);
    assert.match(e.message, /socks could not apply the new configuration \(cannot use v2\)/);
    assert.match(e.message, /the old configuration is back in force$/);
    return true;
  });
  assert.equal(holder.current(), old, "the old value is current again");
  assert.deepEqual(calls, [
    "quic 1→2",
    "socks 1→2",
    // undone newest first, the thrower included (it may have applied part of v2)
    "socks 2→1",
    "quic 2→1",
  ], "forwards never saw v2");
  // The next replace works as usual.
  calls.length = 0;
  holder.replace({ v: 3 });
  assert.deepEqual(calls, ["quic 1→3", "socks 1→3", "forwards 1→3"]);
});

Deno.test("config_source: a subscriber failing to go back is named (restart needed)", () => {
  const holder = createConfigHolder<Cfg>({ v: 1 });
  holder.onChange("metrics", (next) => {
    if (next.v === 1) throw new Error("stuck");
  });
  holder.onChange("forwards", () => {
    throw new Error("port busy");
  });
  assert.throws(() => holder.replace({ v: 2 }), (e: unknown) => {
    assert.ok(e instanceof ApplyError);
    assert.equal(e.subscriber, "forwards");
    assert.deepEqual(e.undoFailures.map((f) => f.subscriber), ["forwards", "metrics"]);
    assert.match(e.message, /forwards, metrics failed to return to it: restart flor/);
    return true;
  });
  assert.equal(holder.current().v, 1);
});

Deno.test("config_source: a subscriber cannot replace while it is being notified", () => {
  const holder = createConfigHolder<Cfg>({ v: 1 });
  let inner: unknown;
  holder.onChange("reloader", (next) => {
    if (next.v !== 2) return;
    try {
      holder.replace({ v: 3 });
    } catch (e) {
      inner = e;
    }
  });
  holder.replace({ v: 2 });
  assert.match(String(inner), /replace\(\) called while subscribers are being notified/);
  assert.equal(holder.current().v, 2);
});

Deno.test("config_source: who subscribes during a notify is told from the next replace", () => {
  const holder = createConfigHolder<Cfg>({ v: 1 });
  const late: number[] = [];
  holder.onChange("first", () => {
    if (holder.subscribers().length === 1) holder.onChange("late", (n) => late.push(n.v));
  });
  holder.replace({ v: 2 });
  assert.deepEqual(late, []);
  holder.replace({ v: 3 });
  assert.deepEqual(late, [3]);
});

import assert from "node:assert/strict";
import fc from "fast-check";
import { type Labels, Registry } from "../../lib/metrics.ts";

interface Sample {
  name: string;
  labels: Labels;
  value: number;
}
interface Family {
  help: string;
  type: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

/**
 * A strict reader of the Prometheus text exposition format 0.0.4, written from the format's
 * description: it throws on anything a scraper could misread, and returns the families with
 * HELP text and label values unescaped.
 */
function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith("\n"), "the exposition ends with a line feed");
  const families = new Map<string, Family>();
  let current: string | undefined;
  const lines = text.slice(0, -1).split("\n");
  for (const [i, line] of lines.entries()) {
    const at = `line ${i + 1}: ${JSON.stringify(line)}`;
    if (line.startsWith("# HELP ")) {
      const m = /^# HELP (\S+) (.*)$/s.exec(line);
      assert.ok(m && NAME.test(m[1]), at);
      assert.ok(!families.has(m[1]), `${at}: second HELP for ${m[1]}`);
      families.set(m[1], { help: unescape(m[2], false, at), type: "", samples: [] });
      current = m[1];
    } else if (line.startsWith("# TYPE ")) {
      const m = /^# TYPE (\S+) (\S+)$/.exec(line);
      assert.ok(m && m[1] === current && TYPES.has(m[2]), at);
      const f = families.get(m[1])!;
      assert.equal(f.type, "", `${at}: second TYPE`);
      assert.equal(f.samples.length, 0, `${at}: TYPE after samples`);
      f.type = m[2];
    } else {
      assert.ok(!line.startsWith("#") && line !== "", `${at}: unexpected line`);
      const s = parseSample(line, at);
      assert.equal(s.name, current, `${at}: sample outside its family`);
      families.get(s.name)!.samples.push(s);
    }
  }
  return families;
}

function parseSample(line: string, at: string): Sample {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/s.exec(line);
  assert.ok(m, `${at}: not a sample`);
  const labels: Labels = {};
  if (m[2]) {
    let rest = m[2].slice(1, -1);
    while (rest !== "") {
      const name = /^([^=]*)="/.exec(rest);
      assert.ok(name && LABEL_NAME.test(name[1]), `${at}: bad label name`);
      rest = rest.slice(name[0].length);
      let raw = "";
      while (rest[0] !== '"') {
        assert.ok(rest !== "", `${at}: unterminated label value`);
        const step = rest[0] === "\\" ? 2 : 1;
        raw += rest.slice(0, step);
        rest = rest.slice(step);
      }
      assert.ok(!(name[1] in labels), `${at}: label ${name[1]} twice`);
      labels[name[1]] = unescape(raw, true, at);
      rest = rest.slice(1);
      if (rest.startsWith(",")) rest = rest.slice(1);
      else assert.equal(rest, "", `${at}: expected ',' between labels`);
    }
  }
  const v = m[3];
  assert.ok(/^(NaN|[+-]Inf|[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)$/.test(v), `${at}: value ${v}`);
  const value = v === "+Inf" ? Infinity : v === "-Inf" ? -Infinity : Number(v);
  return { name: m[1], labels, value };
}

/** Label values may escape \\ \" and \n; HELP text only \\ and \n. */
function unescape(s: string, quotes: boolean, at: string): string {
  assert.ok(!s.includes("\n"), `${at}: raw line feed`);
  if (quotes) assert.ok(!/(^|[^\\])(\\\\)*"/.test(s), `${at}: unescaped quote`);
  return s.replace(/\\(.)?/g, (_, c: string | undefined) => {
    if (c === "\\") return "\\";
    if (c === "n") return "\n";
    if (c === '"' && quotes) return '"';
    throw new assert.AssertionError({ message: `${at}: bad escape \\${c ?? ""}` });
  });
}

Deno.test("metrics: render is HELP, TYPE, then the samples of each family in order", () => {
  const r = new Registry();
  const tunnels = r.counter("flor_tunnels_total", "Tunnels opened.", ["service", "result"]);
  const open = r.gauge("flor_tunnels_open", "Open tunnels.", ["service"]);
  tunnels.inc({ service: "web", result: "ok" });
  tunnels.inc({ service: "web", result: "ok" }, 2);
  tunnels.inc({ service: "ssh", result: "not_allowed" });
  open.set({ service: "web" }, 3);
  assert.equal(
    r.render(),
    [
      "# HELP flor_tunnels_total Tunnels opened.",
      "# TYPE flor_tunnels_total counter",
      'flor_tunnels_total{service="web",result="ok"} 3',
      'flor_tunnels_total{service="ssh",result="not_allowed"} 1',
      "# HELP flor_tunnels_open Open tunnels.",
      "# TYPE flor_tunnels_open gauge",
      'flor_tunnels_open{service="web"} 3',
      "",
    ].join("\n"),
  );
  parseExposition(r.render());
});

Deno.test("metrics: label values with quotes, backslashes and newlines are escaped", () => {
  const r = new Registry();
  const c = r.counter("flor_auth_denied_total", "Refused auths.", ["reason"]);
  const nasty = ['say "hi"', "C:\\dir\\", "two\nlines", "\\n is not a newline", '\\"', ""];
  for (const reason of nasty) c.inc({ reason });
  const text = r.render();
  assert.ok(
    text.includes('flor_auth_denied_total{reason="say \\"hi\\""} 1\n'),
    text,
  );
  assert.ok(text.includes('{reason="C:\\\\dir\\\\"} 1\n'), text);
  assert.ok(text.includes('{reason="two\\nlines"} 1\n'), text);
  assert.ok(text.includes('{reason="\\\\n is not a newline"} 1\n'), text);
  const samples = parseExposition(text).get("flor_auth_denied_total")!.samples;
  assert.deepEqual(samples.map((s) => s.labels.reason), nasty);
});

Deno.test("metrics: HELP escapes backslashes and newlines, and nothing else", () => {
  const r = new Registry();
  const help = 'Bytes "relayed"\nper direction, C:\\ style \\n kept';
  r.counter("flor_relay_bytes_total", help);
  const text = r.render();
  assert.equal(
    text.split("\n")[0],
    '# HELP flor_relay_bytes_total Bytes "relayed"\\nper direction, C:\\\\ style \\\\n kept',
  );
  assert.equal(parseExposition(text).get("flor_relay_bytes_total")!.help, help);
});

Deno.test("metrics: any label value and help text renders as valid exposition (fast-check)", () => {
  fc.assert(
    fc.property(
      fc.string({ maxLength: 30, unit: "binary" }),
      fc.array(fc.string({ maxLength: 20, unit: "binary" }), { minLength: 1, maxLength: 5 }),
      (help, values) => {
        const r = new Registry();
        const g = r.gauge("flor_test", help, ["v"]);
        values.forEach((v, i) => g.set({ v }, i));
        const f = parseExposition(r.render()).get("flor_test")!;
        assert.equal(f.help, help);
        assert.equal(f.type, "gauge");
        assert.deepEqual(
          f.samples.map((s) => s.labels.v),
          [...new Set(values)],
        );
      },
    ),
  );
});

Deno.test("metrics: a counter without labels renders 0 before its first increment", () => {
  const r = new Registry();
  const c = r.counter("flor_reloads_total", "Config reloads.");
  assert.equal(
    r.render(),
    "# HELP flor_reloads_total Config reloads.\n" +
      "# TYPE flor_reloads_total counter\nflor_reloads_total 0\n",
  );
  c.inc();
  c.inc(undefined, 4);
  assert.equal(c.get(), 5);
  assert.ok(r.render().endsWith("\nflor_reloads_total 5\n"));
});

Deno.test("metrics: a labelled family with no series renders HELP and TYPE only", () => {
  const r = new Registry();
  r.counter("flor_tunnels_total", "Tunnels.", ["service"]);
  const f = parseExposition(r.render()).get("flor_tunnels_total")!;
  assert.deepEqual(f, { help: "Tunnels.", type: "counter", samples: [] });
});

Deno.test("metrics: counters only go up", () => {
  const r = new Registry();
  const c = r.counter("flor_x_total", "x", ["a"]);
  assert.throws(
    () => c.inc({ a: "1" }, -1),
    (e) => e instanceof RangeError && /flor_x_total/.test(e.message),
  );
  c.inc({ a: "1" }, 0);
  assert.equal(c.get({ a: "1" }), 0);
  assert.equal(c.get({ a: "never" }), 0);
});

Deno.test("metrics: series are identified by the declared labels, in any key order", () => {
  const r = new Registry();
  const c = r.counter("flor_x_total", "x", ["service", "peer"]);
  c.inc({ service: "web", peer: "n1" });
  c.inc({ peer: "n1", service: "web" });
  c.inc({ service: "web", peer: "n2" });
  assert.equal(c.get({ peer: "n1", service: "web" }), 2);
  assert.equal(c.get({ service: "web", peer: "n2" }), 1);
  assert.equal(parseExposition(r.render()).get("flor_x_total")!.samples.length, 2);
});

Deno.test("metrics: gauges set, add and go down", () => {
  const r = new Registry();
  const g = r.gauge("flor_peers_up", "Peers up.", ["peer"]);
  g.set({ peer: "n1" }, 1);
  g.add({ peer: "n1" }, 2);
  g.add({ peer: "n1" }, -3);
  g.add({ peer: "n2" }, -1);
  assert.equal(g.get({ peer: "n1" }), 0);
  assert.equal(g.get({ peer: "n2" }), -1);
  g.set({ peer: "n2" }, 7);
  const samples = parseExposition(r.render()).get("flor_peers_up")!.samples;
  assert.deepEqual(samples.map((s) => [s.labels.peer, s.value]), [["n1", 0], ["n2", 7]]);
});

Deno.test("metrics: special values render as Prometheus spells them", () => {
  const r = new Registry();
  const g = r.gauge("flor_v", "v", ["k"]);
  g.set({ k: "nan" }, NaN);
  g.set({ k: "inf" }, Infinity);
  g.set({ k: "-inf" }, -Infinity);
  g.set({ k: "big" }, 1e21);
  g.set({ k: "small" }, -2.5e-7);
  const text = r.render();
  assert.ok(text.includes('flor_v{k="nan"} NaN\n'));
  assert.ok(text.includes('flor_v{k="inf"} +Inf\n'));
  assert.ok(text.includes('flor_v{k="-inf"} -Inf\n'));
  const values = parseExposition(text).get("flor_v")!.samples.map((s) => s.value);
  assert.deepEqual(values, [NaN, Infinity, -Infinity, 1e21, -2.5e-7]);
});

Deno.test("metrics: collected gauges are read at every scrape", () => {
  const r = new Registry();
  let rss = 100;
  r.collected("flor_process_resident_memory_bytes", "RSS.", () => rss);
  r.collected("flor_tunnels_open_by_peer", "Open tunnels per peer.", () => [
    { labels: { peer: "n1" }, value: 2 },
    { labels: { peer: "n2" }, value: 0 },
  ]);
  r.collected("flor_nothing", "Nothing yet.", () => []);
  assert.ok(r.render().includes("\nflor_process_resident_memory_bytes 100\n"));
  rss = 250;
  const families = parseExposition(r.render());
  assert.equal(families.get("flor_process_resident_memory_bytes")!.samples[0].value, 250);
  assert.equal(families.get("flor_process_resident_memory_bytes")!.type, "gauge");
  assert.deepEqual(
    families.get("flor_tunnels_open_by_peer")!.samples.map((s) => s.labels),
    [{ peer: "n1" }, { peer: "n2" }],
  );
  assert.deepEqual(families.get("flor_nothing")!.samples.map((s) => s.value), [0]);
});

Deno.test("metrics: bad and duplicate metric names are refused", () => {
  const r = new Registry();
  for (const bad of ["", "1flor", "flor-x", "flor x", "flor_é", "flor{x}"]) {
    assert.throws(() => r.counter(bad, "h"), RangeError, JSON.stringify(bad));
  }
  r.counter("flor_ok:sub_total", "h");
  assert.throws(() => r.gauge("flor_ok:sub_total", "h"), /registered twice/);
  assert.throws(() => r.collected("flor_ok:sub_total", "h", () => 1), RangeError);
});

Deno.test("metrics: an empty registry renders a single line feed", () => {
  assert.equal(new Registry().render(), "\n");
});

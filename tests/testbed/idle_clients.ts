/**
 * Long-lived idle connections, the kind a developer leaves open all day (a database
 * session, an ssh shell): each goes through a user's SOCKS5 port to an echo service and
 * sends a few bytes every IDLE_PING_S, which must come back. Runs inside the users'
 * namespace; one JSON line per event on stdout:
 *
 *   {"ev":"open"|"closed"|"refused","user","service","t":<epoch ms>,"why"?}
 *
 * A closed connection is opened again after REOPEN_S (a refusal too), so a fault's end is
 * seen here as a fresh open.
 *
 *   deno run --allow-net idle_clients.ts '[{"user":"u1","socks":1080,"service":"echo3","port":9003}]'
 */
import { socksConnect } from "../e2e/harness.ts";

/** Often enough to notice a dead tunnel within a fault's bound, rare enough to stay idle. */
const IDLE_PING_S = 5;
/** An echo slower than this over the WAN means the tunnel is gone. */
const ECHO_TIMEOUT_S = 5;
const REOPEN_S = 2;

interface Spec {
  user: string;
  socks: number;
  service: string;
  port: number;
}

const specs: Spec[] = JSON.parse(Deno.args[0]);
const emit = (ev: string, s: Spec, why?: string) =>
  console.log(JSON.stringify({ ev, user: s.user, service: s.service, t: Date.now(), why }));

for (const s of specs) hold(s);

async function hold(s: Spec) {
  for (;;) {
    try {
      const r = await socksConnect(s.socks, `${s.service}.flor`, s.port);
      if (r.reply !== 0) {
        r.conn.close();
        emit("refused", s, `SOCKS reply ${r.reply}`);
      } else {
        emit("open", s);
        emit("closed", s, await idle(r.conn));
        r.conn.close();
      }
    } catch (e) {
      emit("refused", s, (e as Error).message);
    }
    await sleep(REOPEN_S);
  }
}

/** Pings until the connection fails; returns why. A read is always pending, so a close
 * or reset is reported when it happens, not at the next ping. */
async function idle(conn: Deno.TcpConn): Promise<string> {
  const ping = new TextEncoder().encode("idle-ping");
  let received = 0;
  const reading = (async () => {
    const buf = new Uint8Array(64);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) return "closed by peer";
        received += n;
      }
    } catch (e) {
      return `broken: ${(e as Error).message}`;
    }
  })();
  for (;;) {
    const ended = await Promise.race([reading, sleep(IDLE_PING_S).then(() => undefined)]);
    if (ended !== undefined) return ended;
    const want = received + ping.length;
    try {
      for (let o = 0; o < ping.length;) o += await conn.write(ping.subarray(o));
    } catch (e) {
      return `broken: ${(e as Error).message}`;
    }
    const echoed = await Promise.race([reading, until(() => received >= want, ECHO_TIMEOUT_S)]);
    if (typeof echoed === "string") return echoed;
    if (!echoed) return `no echo within ${ECHO_TIMEOUT_S} s`;
  }
}

/** Polls `done` (cheap: a counter) until true or `s` seconds pass. */
async function until(done: () => boolean, s: number): Promise<boolean> {
  for (let waited = 0; waited < s; waited += 0.05) {
    if (done()) return true;
    await sleep(0.05);
  }
  return done();
}

function sleep(s: number) {
  return new Promise((r) => setTimeout(r, s * 1000));
}

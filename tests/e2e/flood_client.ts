/**
 * A flood of QUIC handshakes that never authenticate, from one source, as fast as this
 * process can make them: 50 at a time, the last 200 held open. Prints its running count of
 * attempts after each batch; runs until killed.
 *
 *   deno run -A tests/e2e/flood_client.ts PORT CA_FILE
 *
 * A process of its own (started below the agents' priority by maintenance_test.ts): an
 * attacker's CPU is not the node's, and a flood made in the test's own event loop slowed the
 * test's client and echo target as much as the node.
 */
import { dialUnauthenticated } from "./fixture.ts";

/** Handshakes started together; the next batch waits for this one to settle. */
const BATCH = 50;
/** Connections held open at once, as an attacker keeping state on the node would. */
const HELD = 200;

if (import.meta.main) {
  const [port, caFile] = Deno.args;
  const caPem = await Deno.readTextFile(caFile);
  const open: Deno.QuicConn[] = [];
  let attempts = 0;
  for (;;) {
    await Promise.all(
      Array.from(
        { length: BATCH },
        () => dialUnauthenticated(Number(port), caPem).then((c) => open.push(c), () => {}),
      ),
    );
    attempts += BATCH;
    while (open.length > HELD) open.shift()!.close();
    console.log(attempts);
  }
}

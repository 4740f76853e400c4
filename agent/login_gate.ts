/**
 * Which RFC 1929 logins on flor-gw get their password checked, per source address.
 *
 * Only failures are limited: a check takes a token from its source's bucket and a correct
 * password gives it back, so a busy device (or many behind one NAT) never runs out, while a
 * guesser gets LOGIN_FAILURE_BURST checks and then LOGIN_FAILURES_PER_S. A check holds its
 * token while the hash is computed, so a parallel flood is bounded like a sequential one.
 * A login that finds no token while others from its source are being checked waits for
 * them (a correct one gives its token back) instead of being refused for its neighbours.
 *
 * Unknown usernames are checked too, against a dummy hash (socks_server.ts), so both cost
 * the same and answer in the same time.
 *
 * Pure: time is an input; the shell computes hashes and does the waiting.
 */
import { RateLimiter } from "../lib/rate_limit.ts";

/** Wrong passwords per second a source may try once its burst is spent: a LAN device with a
 * stale password retries a few times a second; each check is one PBKDF2 (~2-6 ms here). */
export const LOGIN_FAILURES_PER_S = 5;
/** Wrong passwords a source may try at once after a quiet period. */
export const LOGIN_FAILURE_BURST = 20;

/** verify: check the password now, then call end(); wait: retry begin() after another login
 * from this source ends; refuse: answer failure without checking (the source is guessing). */
export type LoginStep = "verify" | "wait" | "refuse";

export class LoginGate {
  #limiter: RateLimiter;
  /** Checks running per source; an entry exists only while one runs. */
  #inFlight = new Map<string, number>();

  constructor(
    opts = { ratePerSecond: LOGIN_FAILURES_PER_S, burst: LOGIN_FAILURE_BURST },
  ) {
    this.#limiter = new RateLimiter(opts);
  }

  begin(source: string, now: number): LoginStep {
    if (this.#limiter.take(source, now)) {
      this.#inFlight.set(source, (this.#inFlight.get(source) ?? 0) + 1);
      return "verify";
    }
    return this.#inFlight.has(source) ? "wait" : "refuse";
  }

  /** After a "verify": `ok` gives the token back. */
  end(source: string, ok: boolean, now: number): void {
    const n = (this.#inFlight.get(source) ?? 1) - 1;
    if (n > 0) this.#inFlight.set(source, n);
    else this.#inFlight.delete(source);
    if (ok) this.#limiter.refund(source, now);
  }
}

/**
 * The configuration an agent runs on, replaced as a whole by a reload, and the components
 * that follow it (in the spirit of Nebula's RegisterReloadCallback). A component receives the
 * source and either reads `current()` when it decides something (a dial, a login, a status
 * document: peer_pool.ts, socks_login.ts) or keeps the runtime in its context and replaces it
 * in its `onChange` (quic_server.ts, socks_server.ts, forward_server.ts); what it must do at
 * the moment of a change (cut tunnels the new map no longer allows, open or close forwards,
 * re-arm a timer) it does there too. No one changes a runtime in place, so the code shows who
 * follows what: grep `onChange(`.
 *
 * A reload (reload.ts) runs in this order:
 * 1. load and check everything (files, certificates, what needs a restart); an error here
 *    leaves the old configuration serving and tells nobody;
 * 2. `replace`: swap, then call every subscriber with (next, prev) in the order they
 *    subscribed, synchronously, so no connection runs between two of them;
 * 3. if a subscriber throws, the swap is undone: the old value is current again and the
 *    subscribers already called (the thrower included) are called with (prev, next), newest
 *    first, and `replace` throws ApplyError. Never half applied: all on the new configuration,
 *    or all back on the old one.
 *
 * Every replace notifies, even when nothing differs: the config hash does not cover the
 * certificate and password files, and subscribers apply a whole configuration (not a diff),
 * idempotently, which is also what makes the undo in step 3 the same call.
 *
 * Pure: no I/O, no clock.
 */

/** What a component does when the configuration changes; `next` is already current. */
export type OnChange<T> = (next: T, prev: T) => void;

export interface ConfigSource<T> {
  current(): T;
  /** Registers `apply` under `name` (in errors and logs); returns the unsubscribe. */
  onChange(name: string, apply: OnChange<T>): () => void;
}

export interface ConfigHolder<T> extends ConfigSource<T> {
  /** Swaps in `next` and notifies (see the header); throws ApplyError after an undo. */
  replace(next: T): void;
  /** The subscribers' names in the order they are notified. */
  subscribers(): string[];
}

/** A subscriber refused the new configuration; the old one was put back. */
export class ApplyError extends Error {
  override name = "ApplyError";
  constructor(
    readonly subscriber: string,
    override readonly cause: unknown,
    /** Subscribers that also threw while being put back on the old configuration. */
    readonly undoFailures: { subscriber: string; error: unknown }[],
  ) {
    super(
      `${subscriber} could not apply the new configuration (${errorText(cause)}); ` +
        `the old configuration is back in force` +
        (undoFailures.length
          ? `, though ${undoFailures.map((f) => f.subscriber).join(", ")} failed to ` +
            `return to it: restart flor`
          : ""),
    );
  }
}

interface Subscriber<T> {
  name: string;
  apply: OnChange<T>;
}

export function createConfigHolder<T>(initial: T): ConfigHolder<T> {
  let value = initial;
  let list: Subscriber<T>[] = [];
  let notifying = false;
  return {
    current: () => value,
    onChange(name, apply) {
      const s = { name, apply };
      list = [...list, s];
      return () => list = list.filter((x) => x !== s);
    },
    subscribers: () => list.map((s) => s.name),
    replace(next) {
      // A subscriber that reloads would notify the others in the middle of their own change.
      if (notifying) throw new Error("replace() called while subscribers are being notified");
      const prev = value;
      const subs = list; // who subscribes or leaves meanwhile counts from the next replace
      notifying = true;
      try {
        value = next;
        for (let i = 0; i < subs.length; i++) {
          try {
            subs[i].apply(next, prev);
          } catch (e) {
            value = prev;
            throw new ApplyError(subs[i].name, e, undo(subs.slice(0, i + 1), prev, next));
          }
        }
      } finally {
        notifying = false;
      }
    },
  };
}

/** Puts `called` back on `prev`, newest first; returns who failed to. */
function undo<T>(called: Subscriber<T>[], prev: T, next: T) {
  const failures: { subscriber: string; error: unknown }[] = [];
  for (const s of called.reverse()) {
    try {
      s.apply(prev, next);
    } catch (error) {
      failures.push({ subscriber: s.name, error });
    }
  }
  return failures;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

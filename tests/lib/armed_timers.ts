/**
 * Which timers created from a given module are still armed: setTimeout and clearTimeout are
 * wrapped (they still run the real timers) and each timer remembers the stack that made it.
 * For tests that a deadline is disarmed once the wait it guards has ended; unref'd timers
 * escape Deno's op sanitizer, so it cannot tell.
 */
export interface ArmedTimers {
  /** Timers still armed whose creating stack mentions `from` (a file name). */
  armed(from: string): number;
  restore(): void;
}

export function watchTimers(): ArmedTimers {
  const realSet = globalThis.setTimeout;
  const realClear = globalThis.clearTimeout;
  const set = realSet as unknown as (fn: () => void, ms?: number) => number;
  const live = new Map<number, string>();
  globalThis.setTimeout = ((fn: (...a: unknown[]) => void, ms?: number, ...rest: unknown[]) => {
    const stack = new Error().stack ?? "";
    const id = set(() => {
      live.delete(id);
      fn(...rest);
    }, ms);
    live.set(id, stack);
    return id;
  }) as unknown as typeof setTimeout;
  globalThis.clearTimeout = ((id?: number) => {
    if (id !== undefined) live.delete(id);
    realClear(id);
  }) as unknown as typeof clearTimeout;
  return {
    armed: (from) => [...live.values()].filter((s) => s.includes(from)).length,
    restore() {
      globalThis.setTimeout = realSet;
      globalThis.clearTimeout = realClear;
    },
  };
}

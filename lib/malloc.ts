/**
 * glibc's malloc, seen from inside the process: how much it holds (`mallinfo2`), and a
 * give-back of its free memory to the kernel (`malloc_trim`) when lib/malloc_trim.ts says so.
 * Deno's native side (quinn's buffers, tokio, Deno's per-operation state) and ArrayBuffer
 * backing stores allocate through it; V8's heap pages do not (V8 maps them itself).
 *
 * `Deno.dlopen` needs `--allow-ffi` but no unstable flag. Where libc cannot be loaded (not
 * glibc, no permission) every function returns undefined / false: nothing here is required.
 */

import { afterTrim, TRIM_CHECK_MS, trimDecision, type TrimState } from "./malloc_trim.ts";

/** glibc's struct mallinfo2 (malloc.h): ten size_t fields, in this order. */
export interface MallInfo {
  /** Bytes of the main arena obtained with sbrk. */
  arena: number;
  ordblks: number;
  smblks: number;
  /** Chunks / bytes allocated with mmap (large blocks: > M_MMAP_THRESHOLD). */
  hblks: number;
  hblkhd: number;
  usmblks: number;
  fsmblks: number;
  /** Bytes in use / free in the arenas (not counting mmapped blocks). */
  uordblks: number;
  fordblks: number;
  /** Free bytes at the top of the heap that malloc_trim could give back. */
  keepcost: number;
}

const FIELDS: (keyof MallInfo)[] = [
  "arena",
  "ordblks",
  "smblks",
  "hblks",
  "hblkhd",
  "usmblks",
  "fsmblks",
  "uordblks",
  "fordblks",
  "keepcost",
];

const SYMBOLS = {
  // struct mallinfo2 mallinfo2(void): returned by value (80 bytes) as a struct.
  mallinfo2: { parameters: [], result: { struct: FIELDS.map(() => "usize" as const) } },
  malloc_trim: { parameters: ["usize"], result: "i32" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let libc: Libc | null | undefined;

function _libc(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (Deno.build.os !== "linux") return libc;
  try {
    libc = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  } catch {
    // not glibc, or no --allow-ffi
  }
  return libc;
}

/** What malloc holds now, or undefined where libc is not glibc or not loadable. */
export function mallInfo(): MallInfo | undefined {
  const c = _libc();
  if (!c) return undefined;
  const raw = new BigUint64Array(c.mallinfo2().buffer);
  const out = {} as MallInfo;
  FIELDS.forEach((f, i) => out[f] = Number(raw[i]));
  return out;
}

/** malloc_trim(0): gives free memory of every arena back to the kernel; false if it gave none
 * back or libc is not loadable. */
export function mallocTrim(): boolean {
  return _libc()?.malloc_trim(0n) === 1;
}

/** What the trimmer did, for the memory sampler (agent/memory_sampler.ts). */
export const trimStats = { trims: 0, lastMs: 0, totalMs: 0 };

/** This process's /proc/self/status, or "" where there is no such file (not Linux). */
export function procStatus(): string {
  try {
    return Deno.readTextFileSync("/proc/self/status");
  } catch {
    return "";
  }
}

/** A "KEY: N kB" field of a /proc status text, in bytes; undefined when absent. */
export function statusBytes(status: string, key: string): number | undefined {
  const kb = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1];
  return kb === undefined ? undefined : Number(kb) * 1024;
}

/** Resident anonymous bytes of this process (RssAnon), or undefined where there is no
 * /proc/self/status. */
export function residentAnonBytes(): number | undefined {
  return statusBytes(procStatus(), "RssAnon");
}

/** Checks malloc every TRIM_CHECK_MS and trims when lib/malloc_trim.ts says so; does nothing
 * where libc is not glibc or not loadable, or /proc is not there. Returns its stop. */
export function startMallocTrim(): () => void {
  const first = mallInfo();
  const resident = residentAnonBytes();
  if (!first || resident === undefined) return () => {};
  let state: TrimState = afterTrim({ resident, free: first.fordblks });
  const t = setInterval(() => {
    const info = mallInfo();
    const resident = residentAnonBytes();
    if (!info || resident === undefined) return;
    const d = trimDecision(state, { resident, free: info.fordblks });
    state = d.next;
    if (!d.trim) return;
    const t0 = performance.now();
    mallocTrim();
    trimStats.trims++;
    trimStats.lastMs = performance.now() - t0;
    trimStats.totalMs += trimStats.lastMs;
    state = afterTrim({
      resident: residentAnonBytes() ?? resident,
      free: mallInfo()?.fordblks ?? info.fordblks,
    });
  }, TRIM_CHECK_MS);
  Deno.unrefTimer(t);
  return () => clearInterval(t);
}

/**
 * lib/malloc.ts against this process's real glibc malloc (Linux): mallinfo2 sees ArrayBuffer
 * memory (V8 allocates it with malloc), and the trimmer gives freed memory back to the kernel.
 */
import assert from "node:assert/strict";
import { mallInfo, mallocTrim, startMallocTrim, trimStats } from "../../lib/malloc.ts";
import { TRIM_CHECK_MS } from "../../lib/malloc_trim.ts";

const linux = Deno.build.os === "linux";
const MB = 1024 * 1024;

function rssAnon(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(/RssAnon:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test({
  name: "malloc: mallinfo2 counts ArrayBuffer memory as in use, then as free",
  ignore: !linux,
  fn() {
    const before = mallInfo()!;
    const bufs = Array.from({ length: 800 }, () => new Uint8Array(32 * 1024).fill(1));
    const held = mallInfo()!;
    assert.ok(held.uordblks - before.uordblks >= 20 * MB, "25 MB of buffers in use");
    // Every 4th stays: the freed ones are holes, not merged into the heap's top (which glibc
    // may give back on its own).
    const keep = bufs.filter((b, i) => i % 4 === 0 || (b.buffer.transfer(0), false));
    assert.ok(mallInfo()!.fordblks - held.fordblks >= 10 * MB, "then 18.75 MB of them free");
    assert.equal(keep.length, 200);
  },
});

Deno.test({
  name: "malloc: the trimmer gives memory freed in the middle of the heap back to the kernel",
  ignore: !linux,
  sanitizeOps: false,
  async fn() {
    // Free memory this process already holds resident (the tests before this one in the
    // same process) would serve the buffers below without growing it: give it back first,
    // as an agent's first trim after a burst does.
    mallocTrim();
    const stop = startMallocTrim();
    try {
      // 48 MB of 32 KiB buffers (below glibc's mmap threshold: in the arena), touched.
      const bufs = Array.from({ length: 1536 }, () => new Uint8Array(32 * 1024).fill(1));
      const keep: Uint8Array[] = [];
      // Free all but every 16th: the survivors pin the arena, so only a trim of its middle
      // (not of its top) can return the 45 MB in between.
      bufs.forEach((b, i) => i % 16 === 0 ? keep.push(b) : b.buffer.transfer(0));
      const freed = rssAnon();
      const trims = trimStats.trims;
      await sleep(2 * TRIM_CHECK_MS + 200);
      const after = rssAnon();
      assert.ok(trimStats.trims > trims, "a trim was due");
      assert.ok(
        freed - after >= 30 * MB,
        `resident anonymous memory ${(freed / MB).toFixed(1)} → ${(after / MB).toFixed(1)} MB`,
      );
      assert.equal(keep.length, 96);
    } finally {
      stop();
    }
  },
});

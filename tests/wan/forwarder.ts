/**
 * The link emulator's forwarder: a process that owns two TUN devices (created here, in the
 * host's namespace; wan_link.ts then moves one into each side's namespace, and the open
 * descriptors stay attached) and carries every IP packet read from one to the other after
 * link_schedule.ts has decided its delay, loss and place in the rate-limited queue.
 *
 *   deno run --allow-ffi --allow-read forwarder.ts '{"ab":PROFILE,"ba":PROFILE}'
 *
 * stdout, one JSON object per line: `{"ready":true,"a":"flw3","b":"flw4"}` once the devices
 * exist, then the answers to `stats`. stdin, one JSON command per line (see Command); EOF on
 * stdin (the parent is gone, even killed -9) ends the process, and the kernel deletes the
 * devices with their last descriptor, so nothing outlives the test.
 *
 * All I/O goes through libc with Deno.dlopen (no unstable flag): open + ioctl(TUNSETIFF) to
 * make the devices, nonblocking read/write per packet, and ppoll to sleep until a packet
 * arrives, a command comes in or the next held packet is due. One thread, no event loop:
 * the process does nothing else, so a blocking ppoll costs nothing.
 */
import { DelayLine } from "./delay_line.ts";
import {
  delivered,
  type DirectionState,
  type DropReason,
  type LinkProfile,
  newDirection,
  offer,
  setPartitioned,
  setProfile,
} from "./link_schedule.ts";

export type Direction = "ab" | "ba";

/** Commands on stdin; each is answered by a Reply line with the same id once applied. */
export type Command =
  | { id: number; op: "profile"; dir: Direction; profile: LinkProfile }
  | { id: number; op: "partition"; on: boolean }
  | { id: number; op: "stats" };

export type Reply = Ok | { id: number; error: string };
export type Ok = { id: number; ok: true; stats?: Stats };

export interface DirectionStats {
  forwarded: number;
  bytes: number;
  dropped: Record<DropReason | "write", number>;
  /** Packets queued or on the wire right now. */
  held: number;
}

export interface Stats {
  ab: DirectionStats;
  ba: DirectionStats;
}

// Linux x86_64 / aarch64 values (asm-generic; glibc).
const O_RDWR = 0o2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
/** _IOW('T', 202, int) */
const TUNSETIFF = 0x400454ca;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
/** struct ifreq: 16-byte name, then the union (flags is its first short). */
const IFREQ_BYTES = 40;
const IFNAMSIZ = 16;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const POLLNVAL = 0x20;
const POLLIN = 0x1;
const EINTR = 4;
/** Kernel-chosen names (`flw0`, `flw1`, ...) cannot clash with a parallel run's devices. */
const DEVICE_NAME_PATTERN = "flw%d";
/** Larger than any packet a TUN without offloads hands us (MTU 1500, at most 64 KiB). */
const PACKET_BUFFER_BYTES = 65_536;
/**
 * Packets read from one device before the other and the due list get a turn: bounds the
 * time one busy direction can hold the other up (~64 × 2 µs per read here).
 */
const READ_BATCH = 64;
/** Longest ppoll sleep with nothing held, ms: only an upper bound, input wakes it at once. */
const IDLE_WAIT_MS = 1_000;
/** A control line longer than this is a bug in the parent; commands are under 200 bytes. */
const COMMAND_LINE_MAX = 64 * 1024;

const libc = Deno.dlopen("libc.so.6", {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  ppoll: { parameters: ["buffer", "u64", "buffer", "pointer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
});
const sym = libc.symbols;

function _errno(): number {
  return new Deno.UnsafePointerView(sym.__errno_location()!).getInt32();
}

/** Opens /dev/net/tun as a layer-3 device without packet info; returns fd and name. */
function _openTun(): { fd: number; name: string } {
  const fd = sym.open(new TextEncoder().encode("/dev/net/tun\0"), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw new Error(`open /dev/net/tun failed: errno ${_errno()} (need root)`);
  const ifr = new Uint8Array(IFREQ_BYTES);
  ifr.set(new TextEncoder().encode(DEVICE_NAME_PATTERN));
  new DataView(ifr.buffer).setInt16(IFNAMSIZ, IFF_TUN | IFF_NO_PI, true);
  if (sym.ioctl(fd, BigInt(TUNSETIFF), ifr) < 0) {
    throw new Error(`ioctl TUNSETIFF failed: errno ${_errno()} (need CAP_NET_ADMIN)`);
  }
  const end = ifr.indexOf(0);
  return { fd, name: new TextDecoder().decode(ifr.subarray(0, end < 0 ? IFNAMSIZ : end)) };
}

function _newStats(): DirectionStats {
  return {
    forwarded: 0,
    bytes: 0,
    dropped: { loss: 0, queue: 0, partition: 0, held: 0, write: 0 },
    held: 0,
  };
}

interface _Side {
  state: DirectionState;
  line: DelayLine<Uint8Array>;
  stats: DirectionStats;
  inFd: number;
  outFd: number;
}

function main(): void {
  const initial = JSON.parse(Deno.args[0] ?? "{}") as Record<Direction, LinkProfile>;
  const a = _openTun();
  const b = _openTun();
  const sides: Record<Direction, _Side> = {
    ab: {
      state: newDirection(initial.ab),
      line: new DelayLine(),
      stats: _newStats(),
      inFd: a.fd,
      outFd: b.fd,
    },
    ba: {
      state: newDirection(initial.ba),
      line: new DelayLine(),
      stats: _newStats(),
      inFd: b.fd,
      outFd: a.fd,
    },
  };
  console.log(JSON.stringify({ ready: true, a: a.name, b: b.name }));

  const pollfds = new Uint8Array(8 * 3);
  const pv = new DataView(pollfds.buffer);
  [a.fd, b.fd, 0].forEach((fd, i) => {
    pv.setInt32(i * 8, fd, true);
    pv.setInt16(i * 8 + 4, POLLIN, true);
  });
  const timespec = new Uint8Array(16);
  const tv = new DataView(timespec.buffer);
  const packet = new Uint8Array(PACKET_BUFFER_BYTES);
  let control = "";

  for (;;) {
    const now = performance.now();
    let next = Infinity;
    for (const s of Object.values(sides)) {
      _deliverDue(s, now);
      next = Math.min(next, s.line.nextAt() ?? Infinity);
    }
    const waitMs = Math.max(0, Math.min(IDLE_WAIT_MS, next - performance.now()));
    tv.setBigInt64(0, BigInt(Math.floor(waitMs / 1000)), true);
    tv.setBigInt64(8, BigInt(Math.round((waitMs % 1000) * 1e6)), true);
    for (let i = 0; i < 3; i++) pv.setInt16(i * 8 + 6, 0, true);
    const ready = sym.ppoll(pollfds, 3n, timespec, null);
    if (ready < 0) {
      if (_errno() === EINTR) continue;
      throw new Error(`ppoll failed: errno ${_errno()}`);
    }
    if (ready === 0) continue;
    for (const [i, side] of [[0, sides.ab], [1, sides.ba]] as const) {
      const revents = pv.getInt16(i * 8 + 6, true);
      // A device that went away shows here; a failed read does not say it reliably (below).
      if (revents & (POLLERR | POLLHUP | POLLNVAL)) {
        throw new Error(`TUN device ${i === 0 ? "a" : "b"} failed: poll revents ${revents}`);
      }
      if (revents !== 0) _readPackets(side, packet);
    }
    if (pv.getInt16(22, true) !== 0) {
      const n = Number(sym.read(0, packet, BigInt(PACKET_BUFFER_BYTES)));
      if (n <= 0) return; // parent gone: the devices go with our descriptors
      control += new TextDecoder().decode(packet.subarray(0, n));
      if (control.length > COMMAND_LINE_MAX) throw new Error("control line too long");
      let nl;
      while ((nl = control.indexOf("\n")) >= 0) {
        console.log(JSON.stringify(_apply(JSON.parse(control.slice(0, nl)) as Command, sides)));
        control = control.slice(nl + 1);
      }
    }
  }
}

function _readPackets(s: _Side, buf: Uint8Array): void {
  for (let i = 0; i < READ_BATCH; i++) {
    const n = Number(sym.read(s.inFd, buf, BigInt(buf.length)));
    // -1 ends the batch: the device is drained (EAGAIN) or the read was interrupted. Not
    // errno: read through __errno_location after the call it sometimes held another value (2,
    // ENOENT, on a drained device: the forwarder threw and took the link down mid-run, 1 in
    // ~10 runs of tests/wan/wan_link_test.ts, 2026-12-02); a device that is gone shows in
    // ppoll's revents instead.
    if (n < 0) return;
    const v = offer(s.state, performance.now(), n, Math.random);
    if ("drop" in v) {
      s.stats.dropped[v.drop]++;
      continue;
    }
    s.line.push(v.deliverAt, buf.slice(0, n));
  }
}

function _deliverDue(s: _Side, now: number): void {
  for (let p = s.line.popDue(now); p !== undefined; p = s.line.popDue(now)) {
    delivered(s.state);
    if (sym.write(s.outFd, p, BigInt(p.length)) < 0) {
      s.stats.dropped.write++;
      continue;
    }
    s.stats.forwarded++;
    s.stats.bytes += p.length;
  }
}

function _apply(cmd: Command, sides: Record<Direction, _Side>): Reply {
  try {
    switch (cmd.op) {
      case "profile":
        setProfile(sides[cmd.dir].state, cmd.profile);
        return { id: cmd.id, ok: true };
      case "partition":
        for (const s of Object.values(sides)) {
          setPartitioned(s.state, cmd.on);
          if (cmd.on) s.stats.dropped.partition += s.line.clear();
        }
        return { id: cmd.id, ok: true };
      case "stats":
        sides.ab.stats.held = sides.ab.line.size;
        sides.ba.stats.held = sides.ba.line.size;
        return { id: cmd.id, ok: true, stats: { ab: sides.ab.stats, ba: sides.ba.stats } };
    }
  } catch (e) {
    return { id: cmd.id, error: e instanceof Error ? e.message : String(e) };
  }
}

if (import.meta.main) main();

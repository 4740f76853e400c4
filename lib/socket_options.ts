/**
 * Socket options Deno 2.9.6 does not expose, set through libc on Linux: the QUIC endpoint's UDP
 * receive/send buffers (the kernel default, 208 KiB, overflows while JavaScript runs), and a
 * reset of a TCP connection (a cut tunnel must not look like a complete transfer).
 *
 * Deno gives no file descriptor for its sockets, so `findSocketFd` finds one, the way `ss -p`
 * does: the socket's inode from /proc/net/{tcp,tcp6,udp,udp6} (matched by local and remote
 * port), then the descriptor in /proc/self/fd whose link reads `socket:[inode]`; where /proc is
 * closed to Deno, by asking libc for every descriptor's ports. One scan serves every lookup until
 * one misses, and every hit is re-checked before use. `Deno.dlopen` needs `--allow-ffi` but no
 * unstable flag.
 *
 * The parsing is pure (`parseProcNetSockets`); `setIntOption`, `getIntOption` and
 * `resetConnection` make the libc calls. Elsewhere than Linux every entry point
 * throws `SocketOptionError` with code `unsupported`, and callers say so in their logs.
 */

/** Why an option could not be set; `detail` is for logs and operators. */
export type SocketOptionErrorCode =
  /** Not Linux: the descriptor cannot be found. */
  | "unsupported"
  /** libc could not be loaded (no --allow-ffi, or no libc.so.6). */
  | "no_libc"
  /** No descriptor of this process matches the socket (closed already, or another namespace). */
  | "not_found"
  /** setsockopt/getsockopt failed; the message carries errno. */
  | "failed";

export class SocketOptionError extends Error {
  override name = "SocketOptionError";
  constructor(readonly code: SocketOptionErrorCode, message: string) {
    super(message);
  }
}

/** Linux values (asm-generic/socket.h; the same on x86-64 and arm64). */
export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
/** Like SO_SNDBUF/SO_RCVBUF but past net.core.{w,r}mem_max; needs CAP_NET_ADMIN. */
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;

const EPERM = 1;

/** One row of /proc/net/{tcp,udp}{,6}. */
export interface ProcNetSocket {
  /** Local address as the kernel prints it (hex, host byte order per 32-bit word). */
  localHex: string;
  localPort: number;
  remoteHex: string;
  remotePort: number;
  inode: number;
}

/** Parses the text of /proc/net/tcp, tcp6, udp or udp6 (same layout: a header line, then
 * `sl local_address rem_address st ... uid timeout inode ...`). Rows it cannot read are
 * skipped: the kernel's format is stable, and a partial read must not throw. */
export function parseProcNetSockets(text: string): ProcNetSocket[] {
  const rows: ProcNetSocket[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const local = f[1].split(":");
    const remote = f[2].split(":");
    const inode = Number(f[9]);
    if (local.length !== 2 || remote.length !== 2 || !Number.isSafeInteger(inode)) continue;
    rows.push({
      localHex: local[0],
      localPort: parseInt(local[1], 16),
      remoteHex: remote[0],
      remotePort: parseInt(remote[1], 16),
      inode,
    });
  }
  return rows;
}

export interface SocketMatch {
  protocol: "tcp" | "udp";
  localPort: number;
  /** For a connected TCP socket; a listener or an unconnected UDP socket has remote port 0. */
  remotePort?: number;
}

/** Inodes of the sockets in `rows` with these ports (0 is never a bound port, so it matches
 * nothing but an unconnected remote). */
export function matchingInodes(rows: ProcNetSocket[], m: SocketMatch): number[] {
  return rows
    .filter((r) =>
      r.localPort === m.localPort && (m.remotePort === undefined || r.remotePort === m.remotePort)
    )
    .map((r) => r.inode)
    .filter((inode) => inode !== 0); // TIME_WAIT rows have no inode
}

/** A socket of this process as one scan saw it. `inode` is set when the scan read /proc (the
 * re-check is a readlink), unset when it asked libc (the re-check asks libc again). */
interface OwnSocket {
  protocol: "tcp" | "udp";
  localPort: number;
  remotePort: number;
  fd: number;
  inode?: number;
}

/** What one scan of one protocol found: this process's sockets by local port, and for a /proc
 * scan which sockets /proc/net listed at all (ours or not), so not_found can say which it was. */
interface SocketScan {
  byLocal: Map<number, OwnSocket[]>;
  listed?: ProcNetSocket[];
}

/**
 * The last scan of each protocol (reading /proc/net/tcp{,6} costs ~10-30 ms here whatever it
 * holds: a UDP lookup at start must not pay it), reused until a lookup misses it or its descriptor fails the re-check; then one
 * fresh scan. A node that dies takes every tunnel to it down at once, and each reset needs its
 * socket's descriptor: a scan per reset (every socket, every descriptor) made that O(n²) —
 * measured on a loaded 2-core host, 2,000 lookups took 371 s with a /proc scan each and 45 s
 * with a libc scan each; sharing the scan, 0.1-0.7 s (tests/bench/reset_many.ts).
 * Staleness costs nothing in correctness: a socket opened since the scan is a miss (rescan), and
 * a descriptor closed or reused since the scan fails the re-check, so it is never acted on.
 */
const lastScan: Partial<Record<SocketMatch["protocol"], SocketScan>> = {};

/** The descriptor of this process's socket that matches, or SocketOptionError. Several
 * matches (two processes' sockets on one port via SO_REUSEPORT) are narrowed to ours by the
 * scan, which sees only this process's descriptors. */
export function findSocketFd(m: SocketMatch): number {
  if (Deno.build.os !== "linux") {
    throw new SocketOptionError(
      "unsupported",
      `socket options need Linux /proc (${Deno.build.os})`,
    );
  }
  const cached = lastScan[m.protocol];
  let scan = cached ?? (lastScan[m.protocol] = scanSockets(m.protocol));
  let fd = firstStillThere(scan, m);
  if (fd === undefined && cached) {
    scan = lastScan[m.protocol] = scanSockets(m.protocol);
    fd = firstStillThere(scan, m);
  }
  if (fd !== undefined) return fd;
  throw new SocketOptionError(
    "not_found",
    scan.listed && matchingInodes(scan.listed, m).length === 0
      ? `no ${describe(m)} socket in /proc/net`
      : `no descriptor of this process is the ${describe(m)}`,
  );
}

function firstStillThere(scan: SocketScan, m: SocketMatch): number | undefined {
  for (const s of scan.byLocal.get(m.localPort) ?? []) {
    if (m.remotePort !== undefined && s.remotePort !== m.remotePort) continue;
    if (stillThere(s)) return s.fd;
  }
  return undefined;
}

/** Whether the descriptor still holds the socket the scan saw (not closed, not reused). */
function stillThere(s: OwnSocket): boolean {
  if (s.inode === undefined) {
    const now = describeFd(loadLibc(), s.fd);
    return now !== undefined && now.protocol === s.protocol &&
      now.localPort === s.localPort && now.remotePort === s.remotePort;
  }
  try {
    return Deno.readLinkSync(`/proc/self/fd/${s.fd}`) === `socket:[${s.inode}]`;
  } catch {
    return false; // closed since the scan
  }
}

function describe(m: SocketMatch): string {
  return `${m.protocol} socket on local port ${m.localPort}` +
    (m.remotePort === undefined ? "" : ` to remote port ${m.remotePort}`);
}

function scanSockets(protocol: SocketMatch["protocol"]): SocketScan {
  const sockets = scanProc(protocol) ?? scanLibc(protocol);
  const byLocal = new Map<number, OwnSocket[]>();
  for (const s of sockets.own) {
    const list = byLocal.get(s.localPort);
    if (list) list.push(s);
    else byLocal.set(s.localPort, [s]);
  }
  return { byLocal, listed: sockets.listed };
}

/** The way `ss -p` does it: inodes from /proc/net/{tcp,udp}{,6}, descriptors from the
 * /proc/self/fd links that read `socket:[inode]`. Undefined when /proc is closed to this
 * process: Deno 2.9.6 lets only --allow-all read /proc/self/fd (an agent run with explicit
 * permissions; the release builds use --allow-all). */
function scanProc(
  protocol: SocketMatch["protocol"],
): { own: OwnSocket[]; listed: ProcNetSocket[] } | undefined {
  const listed: ProcNetSocket[] = [];
  for (const v of ["", "6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(`/proc/net/${protocol}${v}`);
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable) return undefined;
      continue; // no IPv6 in this kernel or namespace
    }
    listed.push(...parseProcNetSockets(text));
  }
  const fdByInode = new Map<number, number>();
  let entries: Iterable<Deno.DirEntry>;
  try {
    entries = Deno.readDirSync("/proc/self/fd");
  } catch {
    return undefined; // not permitted, or no /proc mounted: ask libc
  }
  for (const entry of entries) {
    try {
      const inode = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/self/fd/${entry.name}`))
        ?.[1];
      if (inode !== undefined) fdByInode.set(Number(inode), Number(entry.name));
    } catch {
      // closed while we looked
    }
  }
  const own: OwnSocket[] = [];
  for (const r of listed) {
    // Another process's socket, or a TIME_WAIT row (inode 0: no socket left to find).
    const fd = r.inode === 0 ? undefined : fdByInode.get(r.inode);
    if (fd === undefined) continue;
    own.push({ protocol, localPort: r.localPort, remotePort: r.remotePort, fd, inode: r.inode });
  }
  return { own, listed };
}

/** Descriptors a libc scan looks at: far above what an agent holds (limits.open_fds_warn is
 * 8192 by default, but sockets bound at start get low numbers). */
export const SCAN_MAX_FD = 65_536;

const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SO_TYPE = 3;
const AF_INET = 2;
const AF_INET6 = 10;

/** Pure: the port of a struct sockaddr_in/sockaddr_in6 (family in host order, port in network
 * order), or undefined for another family. */
export function sockaddrPort(addr: Uint8Array): number | undefined {
  const family = addr[0] | (addr[1] << 8);
  if (family !== AF_INET && family !== AF_INET6) return undefined;
  return (addr[2] << 8) | addr[3];
}

/** The scan without /proc: getsockname, SO_TYPE and getpeername on every descriptor. EBADF
 * ends nothing: the descriptor table has holes. */
function scanLibc(protocol: SocketMatch["protocol"]): { own: OwnSocket[]; listed?: undefined } {
  const c = loadLibc();
  const own: OwnSocket[] = [];
  for (let fd = 0; fd < SCAN_MAX_FD; fd++) {
    const s = describeFd(c, fd);
    if (s?.protocol === protocol) own.push({ ...s, fd });
  }
  return { own };
}

const sockaddr = new Uint8Array(128);
const sockaddrLen = new Uint32Array(1);
const sockType = new Int32Array(1);
const sockTypeLen = new Uint32Array(1);

/** An IPv4/IPv6 TCP or UDP socket's ports as libc reports them (remote 0 when unconnected),
 * or undefined for anything else (no descriptor, a file, a Unix socket). */
function describeFd(c: Libc, fd: number): Omit<OwnSocket, "fd"> | undefined {
  const portOf = (fn: Libc["getsockname"]) => {
    sockaddrLen[0] = sockaddr.length;
    return fn(fd, sockaddr, sockaddrLen) === 0 ? sockaddrPort(sockaddr) : undefined;
  };
  const localPort = portOf(c.getsockname);
  if (localPort === undefined) return undefined;
  sockTypeLen[0] = 4;
  if (c.getsockopt(fd, SOL_SOCKET, SO_TYPE, sockType, sockTypeLen) !== 0) return undefined;
  const protocol = sockType[0] === SOCK_STREAM ? "tcp" : sockType[0] === SOCK_DGRAM ? "udp" : null;
  if (protocol === null) return undefined;
  return { protocol, localPort, remotePort: portOf(c.getpeername) ?? 0 };
}

const LIBC_SYMBOLS = {
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];
let libc: Libc | undefined;

function loadLibc(): Libc {
  if (libc) return libc;
  if (Deno.build.os !== "linux") {
    throw new SocketOptionError("unsupported", `socket options need Linux (${Deno.build.os})`);
  }
  try {
    libc = Deno.dlopen("libc.so.6", LIBC_SYMBOLS).symbols;
  } catch (e) {
    throw new SocketOptionError("no_libc", `cannot load libc for socket options: ${e}`);
  }
  return libc;
}

function errno(): number {
  const p = loadLibc().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

/** setsockopt(fd, SOL_SOCKET, name, &value, 4). Throws SocketOptionError `failed` with errno
 * (EPERM for a *FORCE option without CAP_NET_ADMIN). */
export function setIntOption(fd: number, name: number, value: number): void {
  const buf = new Int32Array([value]);
  if (loadLibc().setsockopt(fd, SOL_SOCKET, name, buf, 4) !== 0) {
    const e = errno();
    throw new SocketOptionError(
      "failed",
      `setsockopt(${name}) = ${value} failed: errno ${e}${e === EPERM ? " (not permitted)" : ""}`,
    );
  }
}

/** getsockopt(fd, SOL_SOCKET, name) as an int (Linux reports buffer sizes doubled). */
export function getIntOption(fd: number, name: number): number {
  const value = new Int32Array(1);
  const len = new Uint32Array([4]);
  if (loadLibc().getsockopt(fd, SOL_SOCKET, name, value, len) !== 0) {
    throw new SocketOptionError("failed", `getsockopt(${name}) failed: errno ${errno()}`);
  }
  return value[0];
}

/** Whether a *FORCE option was refused for lack of privilege (then try the capped one). */
export function isNotPermitted(e: unknown): boolean {
  return e instanceof SocketOptionError && e.code === "failed" && /errno 1\b/.test(e.message);
}

/**
 * Resets this TCP connection now: the peer's next read fails with "connection reset" instead
 * of ending like a complete stream. Call it right before close(); on failure the caller still
 * closes (a FIN) and logs why.
 *
 * SO_LINGER 0 + close() is the textbook way, but Deno's close() first shuts down the write
 * half (tokio's OwnedWriteHalf does on drop), so the peer reads the FIN, i.e. a clean end,
 * before the RST (measured: the peer's read returned EOF). connect() with AF_UNSPEC instead
 * runs the kernel's tcp_disconnect(), which sends the RST at once and leaves the descriptor
 * valid and unconnected, so Deno's own shutdown and close that follow are harmless.
 */
export function resetConnection(conn: Deno.TcpConn): void {
  const fd = findSocketFd({
    protocol: "tcp",
    localPort: (conn.localAddr as Deno.NetAddr).port,
    remotePort: (conn.remoteAddr as Deno.NetAddr).port,
  });
  const unspec = new Uint8Array(16); // struct sockaddr { sa_family = AF_UNSPEC (0); ... }
  if (loadLibc().connect(fd, unspec, unspec.length) !== 0) {
    throw new SocketOptionError("failed", `connect(AF_UNSPEC) failed: errno ${errno()}`);
  }
}

/**
 * Socket options Deno 2.9.6 does not expose, set through libc on Linux: the QUIC endpoint's UDP
 * receive/send buffers (the kernel default, 208 KiB, overflows while JavaScript runs), and a
 * reset of a TCP connection (a cut tunnel must not look like a complete transfer).
 *
 * Deno gives no file descriptor for its sockets, so one is found the way `ss -p` does: the
 * socket's inode from /proc/net/{tcp,tcp6,udp,udp6} (matched by local and remote port), then the
 * descriptor in /proc/self/fd whose link reads `socket:[inode]`. `Deno.dlopen` needs
 * `--allow-ffi` but no unstable flag.
 *
 * The parsing is pure (`parseProcNetSockets`); `findSocketFd` does the reading; `setIntOption`,
 * `getIntOption` and `resetConnection` make the libc calls. Elsewhere than Linux every entry point
 * throws `SocketOptionError` with code `unsupported`, and callers say so in their logs.
 */

/** Why an option could not be set; `detail` is for logs and operators. */
export type SocketOptionErrorCode =
  /** Not Linux, or no /proc: the descriptor cannot be found. */
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

/** The descriptor of this process's socket that matches, or SocketOptionError. Several
 * matches (two processes' sockets on one port via SO_REUSEPORT) are narrowed to ours by the
 * /proc/self/fd scan. */
export function findSocketFd(m: SocketMatch): number {
  if (Deno.build.os !== "linux") {
    throw new SocketOptionError(
      "unsupported",
      `socket options need Linux /proc (${Deno.build.os})`,
    );
  }
  const inodes = new Set<number>();
  for (const v of ["", "6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(`/proc/net/${m.protocol}${v}`);
    } catch {
      continue; // no IPv6 in this kernel or namespace
    }
    for (const inode of matchingInodes(parseProcNetSockets(text), m)) inodes.add(inode);
  }
  if (inodes.size === 0) {
    throw new SocketOptionError("not_found", `no ${describe(m)} socket in /proc/net`);
  }
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    let link: string;
    try {
      link = Deno.readLinkSync(`/proc/self/fd/${entry.name}`);
    } catch {
      continue; // closed while we looked
    }
    const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
    if (inode !== undefined && inodes.has(Number(inode))) return Number(entry.name);
  }
  throw new SocketOptionError("not_found", `no descriptor of this process is the ${describe(m)}`);
}

function describe(m: SocketMatch): string {
  return `${m.protocol} socket on local port ${m.localPort}` +
    (m.remotePort === undefined ? "" : ` to remote port ${m.remotePort}`);
}

const LIBC_SYMBOLS = {
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

let libc: Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"] | undefined;

function loadLibc() {
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

/**
 * A real PostgreSQL server for tests: Debian's postgresql, initialised and started as the
 * unprivileged `postgres` user in a temporary directory, on a loopback TCP port, trust
 * authentication (the tunnel, not the database, is under test).
 */
import { join } from "node:path";
import { freeTcpPort, runOk, runToEnd } from "./harness.ts";

export interface Postgres {
  port: number;
  stop(): Promise<void>;
}

async function pgBin(name: string): Promise<string> {
  const versions: string[] = [];
  for await (const e of Deno.readDir("/usr/lib/postgresql")) versions.push(e.name);
  versions.sort((a, b) => Number(b) - Number(a));
  if (!versions.length) throw new Error("no /usr/lib/postgresql/*: apt-get install -y postgresql");
  return join("/usr/lib/postgresql", versions[0], "bin", name);
}

async function asPostgres(bin: string, args: string[]) {
  await runOk("runuser", ["-u", "postgres", "--", await pgBin(bin), ...args]);
}

export async function startPostgres(): Promise<Postgres> {
  const dir = await Deno.makeTempDir({ prefix: "florete-pg-" });
  await Deno.chmod(dir, 0o755);
  await runToEnd("chown", ["postgres", dir]);
  const data = join(dir, "data");
  const port = freeTcpPort();
  try {
    await asPostgres("initdb", ["-D", data, "--auth=trust", "-U", "postgres", "--no-sync"]);
    await asPostgres("pg_ctl", [
      "-D",
      data,
      "-o",
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
      "-l",
      join(dir, "server.log"),
      "-w",
      "start",
    ]);
  } catch (e) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
  return {
    port,
    async stop() {
      await asPostgres("pg_ctl", ["-D", data, "-m", "immediate", "stop"]).catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** psql to a loopback port, one query, unaligned output (what a user would type). */
export function psql(port: number, query: string) {
  return runToEnd("psql", [
    `host=127.0.0.1 port=${port} user=postgres dbname=postgres sslmode=disable ` +
    "gssencmode=disable connect_timeout=10",
    "-Atc",
    query,
  ]);
}

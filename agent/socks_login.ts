/**
 * Who speaks on a SOCKS connection that sent RFC 1929 credentials: a local workload selecting
 * one of the agent's identities by its password, or (flor-gw) a LAN client of the gateway.
 *
 * Gateway logins go through the login gate (login_gate.ts: only wrong passwords are
 * limited, per source) and always cost one PBKDF2 derivation: an unknown username is checked
 * against a dummy hash, so known and unknown names answer in the same time.
 */
import { principalString } from "../lib/identity.ts";
import { constantTimeEqual } from "../lib/binary.ts";
import { entryOf } from "../lib/cluster.ts";
import { generatePassword, hashPassword, verifyPassword } from "../lib/password_hash.ts";
import { LoginGate } from "./login_gate.ts";
import type { LocalIdentity, Runtime } from "./runtime.ts";

/** Who is speaking on a SOCKS connection: the identity its tunnels use, and for flor-gw the
 * LAN client and the services it may use. */
export interface Caller {
  identity: LocalIdentity;
  lanClient?: string;
  services?: ReadonlySet<string>;
}

/** "limited": the source has used up its wrong passwords, so this one was not checked. */
export type LoginResult = Caller | "limited" | undefined;

export interface SocksLogins {
  /** A workload on this machine: `web` or `service:web` and that identity's password. */
  local(username: string, password: string): Caller | undefined;
  /** A LAN client of gateway `gw`, connecting from `source`. */
  gateway(gw: string, source: string, username: string, password: string): Promise<LoginResult>;
}

/** `runtime` is read at each login: a reload brings new identities, passwords and clients,
 * while the login gate's counts carry on. */
export function createSocksLogins(runtime: () => Runtime): SocksLogins {
  const gate = new LoginGate();
  /** Logins waiting for another from the same source to end (LoginGate "wait"); bounded by
   * the per-source connection cap. */
  const waiters = new Map<string, Array<() => void>>();
  let dummy: Promise<string> | undefined;
  const dummyHash = () => (dummy ??= hashPassword(generatePassword()));
  // Computed at start, so the first unknown name costs no more than the next.
  if (runtime().loaded.config.gateway) dummyHash();

  async function turn(source: string): Promise<boolean> {
    for (;;) {
      const step = gate.begin(source, Date.now());
      if (step !== "wait") return step === "verify";
      await new Promise<void>((wake) => {
        const list = waiters.get(source) ?? [];
        list.push(wake);
        waiters.set(source, list);
      });
    }
  }

  function done(source: string, ok: boolean) {
    gate.end(source, ok, Date.now());
    const list = waiters.get(source);
    waiters.delete(source);
    for (const wake of list ?? []) wake();
  }

  return {
    local(username, password) {
      // Only identities that have a password can be selected.
      for (const identity of runtime().identities.values()) {
        if (identity.password === undefined) continue;
        if (username !== identity.id && username !== identity.principal.name) continue;
        return constantTimeEqual(identity.password, password) ? { identity } : undefined;
      }
      return undefined;
    },

    async gateway(gw, source, username, password) {
      if (!await turn(source)) return "limited";
      let ok = false;
      const rt = runtime();
      try {
        const spec = entryOf(rt.view.cluster.gateways, gw)?.clients;
        const entry = spec ? entryOf(spec, username) : undefined;
        const hash = entry ? rt.gatewayClients?.get(username) : undefined;
        const verified = await verifyPassword(password, hash ?? await dummyHash());
        const identity = rt.identities.get(principalString({ kind: "gateway", name: gw }));
        ok = verified && hash !== undefined && identity !== undefined;
        return ok
          ? { identity: identity!, lanClient: username, services: new Set(entry!.services) }
          : undefined;
      } finally {
        done(source, ok);
      }
    },
  };
}

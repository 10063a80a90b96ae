import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

// The native guard (native/tls-certificate-guard.c, built by node-gyp at
// `npm install`): OpenSSL itself refuses, during the handshake, a client
// whose Certificate message holds a certificate that does not chain to its
// leaf. Node then shows every certificate the client sent, so counting what
// Node shows is exact. It acts only on TLS server sockets whose session-id
// context is GUARD_MARKER: the agent listener's tls.Server sets it.

/** The agent listener's TLS session-id context (at most 32 bytes). */
export const GUARD_MARKER = "bmaas-agent-listener";

interface GuardAddon {
  install(marker: Buffer): boolean;
  stats(): { checked: number; refused: number };
  allLinked(body: Buffer): boolean;
}

export interface CertificateGuard {
  /** Client Certificate messages the guard read on the agent listener, and those it refused. */
  stats(): { checked: number; refused: number };
  /**
   * The guard's check on a TLS 1.3 Certificate message body (no handshake
   * header): true when it parses and every certificate chains to the leaf
   * (or there is none).
   */
  allLinked(body: Buffer): boolean;
}

// Two homes for one file: the sources run from the repository (tests), the
// build from dist/, one directory deeper.
const CANDIDATES = ["../build/Release/tls_certificate_guard.node", "../../build/Release/tls_certificate_guard.node"];

let loaded: { guard?: CertificateGuard; error?: string } | undefined;

/**
 * Installs the guard once per process and returns it, or why it cannot be
 * had (no compiler at install time, another platform): the caller then falls
 * back to counting certificates through the JavaScript tap.
 */
export function certificateGuard(): { guard?: CertificateGuard; error?: string } {
  if (loaded) return loaded;
  const path = CANDIDATES.map((c) => fileURLToPath(new URL(c, import.meta.url))).find((p) => existsSync(p));
  if (!path) return (loaded = { error: "native/tls-certificate-guard.c was not built (npm install runs node-gyp)" });
  try {
    const addon = createRequire(import.meta.url)(path) as GuardAddon;
    addon.install(Buffer.from(GUARD_MARKER));
    loaded = { guard: { stats: () => addon.stats(), allLinked: (body) => addon.allLinked(body) } };
  } catch (err) {
    loaded = { error: `the native TLS certificate guard did not load: ${(err as Error).message}` };
  }
  return loaded;
}

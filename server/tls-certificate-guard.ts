import { loadNativeAddon } from "../lib/native-addon.js";

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

let loaded: { guard?: CertificateGuard; error?: string } | undefined;

/**
 * Installs the guard once per process and returns it, or why it cannot be
 * had (no compiler at install time, another platform): the caller then falls
 * back to counting certificates through the JavaScript tap.
 */
export function certificateGuard(): { guard?: CertificateGuard; error?: string } {
  if (loaded) return loaded;
  const { addon, error } = loadNativeAddon<GuardAddon>("tls_certificate_guard");
  if (!addon) return (loaded = { error: error! });
  try {
    addon.install(Buffer.from(GUARD_MARKER));
    loaded = { guard: { stats: () => addon.stats(), allLinked: (body) => addon.allLinked(body) } };
  } catch (err) {
    loaded = { error: `the native TLS certificate guard did not install: ${(err as Error).message}` };
  }
  return loaded;
}

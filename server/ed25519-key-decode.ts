import { loadNativeAddon } from "../lib/native-addon.js";

// How OpenSSL decodes the Ed25519 key of every agent's certificate
// (native/ed25519-key-decode.c, built by node-gyp at `npm install`).
// "legacy": OpenSSL's built-in Ed25519 key method, as OpenSSL 1.1 did;
// "provider": OpenSSL 3.0's default, whose decoder setup on every parse was
// ~10% of the server's CPU while a fleet connected. The same OpenSSL code
// signs and verifies either way. Process-wide: the choice is OpenSSL's, not
// a listener's, and once "legacy" is installed it stays for the process.

export type Ed25519Decoder = "legacy" | "provider";

interface DecodeAddon {
  install(): boolean;
  active(): boolean;
}

let installed: { error?: string } | undefined;

/**
 * Makes OpenSSL decode certificates' Ed25519 keys with its legacy method,
 * once per process (any thread); returns why not when the addon was not
 * built or OpenSSL refused. Nothing changes then: OpenSSL's default stays.
 */
export function decodeEd25519KeysLegacy(): { error?: string } {
  if (installed) return installed;
  const { addon, error } = loadNativeAddon<DecodeAddon>("ed25519_key_decode");
  if (!addon) return (installed = { error: error! });
  try {
    addon.install();
    installed = {};
  } catch (err) {
    installed = { error: `Ed25519 keys stay on OpenSSL's provider decoder: ${(err as Error).message}` };
  }
  return installed;
}

/** Whether OpenSSL decodes Ed25519 keys with the legacy method now (false when the addon is not built). */
export function ed25519DecoderInUse(): Ed25519Decoder {
  const { addon } = loadNativeAddon<DecodeAddon>("ed25519_key_decode");
  return addon?.active() ? "legacy" : "provider";
}

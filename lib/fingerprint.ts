import { createHash } from "node:crypto";

/** SHA-256 of an agent public key, lowercase hex: how keys are shown and logged. */
export function keyFingerprint(publicKey: Uint8Array): string {
  return createHash("sha256").update(publicKey).digest("hex");
}

import { createDecipheriv, createHmac } from "node:crypto";
import type { Socket } from "node:net";
import { Duplex } from "node:stream";

// "Exactly one client certificate" (the wire contract) cannot be checked
// through Node's TLS API: OpenSSL keeps the certificates a client sent, but
// Node only shows those that chain to the leaf. With TLS 1.3 the client's
// Certificate message is encrypted, so the agent listener reads it itself:
// the raw connection passes through a ClientFlight, which notes the
// ClientHello's random and keeps the client's first encrypted records; once
// the handshake is over, the client handshake traffic secret (from OpenSSL's
// key log, for this connection only) decrypts them and the certificate
// entries are counted. Only the handshake is inspected; afterwards the
// ClientFlight just passes bytes on. Session resumption is off on the agent
// listener (see agent-connections.ts), so every connection sends its
// certificate and no 0-RTT data can sit in front of it.

const RECORD_HEADER = 5;
const CONTENT_HANDSHAKE = 22;
const CONTENT_APPLICATION_DATA = 23;
const HANDSHAKE_CERTIFICATE = 11;
/**
 * How much of a client's encrypted records is kept until its handshake is
 * over (far above one certificate): the client may follow its Finished with
 * requests at once, and those are not kept beyond this.
 */
export const MAX_CLIENT_FLIGHT_BYTES = 32 * 1024;

/**
 * Sits between the TCP socket and the TLS socket. Client → server bytes are
 * scanned for record headers until `release()`; server → client bytes pass.
 */
export class ClientFlight extends Duplex {
  /** Hex client random of the ClientHello, once seen. */
  clientRandom: string | undefined;
  /** The client's encrypted records (header included), in order, until released. */
  records: Buffer[] = [];
  #scanning = true;
  #pending: Buffer = Buffer.alloc(0);
  #captured = 0;

  constructor(
    readonly raw: Socket,
    private readonly onHello: (flight: ClientFlight) => void,
  ) {
    super({ allowHalfOpen: false });
    raw.on("data", (chunk: Buffer) => {
      if (this.#scanning) this.#scan(chunk);
      if (!this.push(chunk)) raw.pause();
    });
    raw.on("end", () => this.push(null));
    raw.on("close", () => this.destroy());
  }

  /** Stops scanning and drops what was kept. */
  release(): void {
    this.#scanning = false;
    this.records = [];
    this.#pending = Buffer.alloc(0);
  }

  override _read(): void {
    this.raw.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.raw.write(chunk, done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.raw.end();
    done();
  }

  override _destroy(err: Error | null, done: (err: Error | null) => void): void {
    this.raw.destroy();
    done(err);
  }

  #scan(chunk: Buffer): void {
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    while (this.#scanning && this.#pending.length >= RECORD_HEADER) {
      const length = this.#pending.readUInt16BE(3);
      if (this.#pending.length < RECORD_HEADER + length) break;
      const record = this.#pending.subarray(0, RECORD_HEADER + length);
      this.#pending = this.#pending.subarray(RECORD_HEADER + length);
      this.#record(record);
    }
    // Keep no reference into the socket's read buffer.
    if (this.#pending.length > 0) this.#pending = Buffer.from(this.#pending);
  }

  #record(record: Buffer): void {
    const type = record[0];
    if (type === CONTENT_HANDSHAKE && this.clientRandom === undefined) {
      // ClientHello: type (1), length (3), legacy_version (2), random (32).
      if (record.length >= RECORD_HEADER + 38 && record[RECORD_HEADER] === 1) {
        this.clientRandom = record.subarray(RECORD_HEADER + 6, RECORD_HEADER + 38).toString("hex");
        this.onHello(this);
      }
      return;
    }
    if (type !== CONTENT_APPLICATION_DATA) return;
    // Past the bound nothing more is kept: a Certificate message that does
    // not fit in it cannot be counted, and the connection is refused.
    this.#captured += record.length;
    if (this.#captured > MAX_CLIENT_FLIGHT_BYTES) return;
    this.records.push(Buffer.from(record));
  }
}

interface Suite {
  cipher: "aes-128-gcm" | "aes-256-gcm" | "chacha20-poly1305";
  hash: "sha256" | "sha384";
  keyLength: number;
}

const SUITES: Record<string, Suite> = {
  TLS_AES_128_GCM_SHA256: { cipher: "aes-128-gcm", hash: "sha256", keyLength: 16 },
  TLS_AES_256_GCM_SHA384: { cipher: "aes-256-gcm", hash: "sha384", keyLength: 32 },
  TLS_CHACHA20_POLY1305_SHA256: { cipher: "chacha20-poly1305", hash: "sha256", keyLength: 32 },
};

/** RFC 8446 §7.1 HKDF-Expand-Label with an empty context, for outputs of at most one hash block. */
function expandLabel(hash: Suite["hash"], secret: Buffer, label: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${label}`, "latin1");
  const info = Buffer.concat([Buffer.from([length >> 8, length & 0xff, full.length]), full, Buffer.from([0])]);
  return createHmac(hash, secret).update(info).update(Buffer.from([1])).digest().subarray(0, length);
}

function decryptRecord(suite: Suite, key: Buffer, iv: Buffer, seq: number, record: Buffer): Buffer | undefined {
  const nonce = Buffer.from(iv);
  const seqBytes = Buffer.alloc(8);
  seqBytes.writeBigUInt64BE(BigInt(seq));
  for (let i = 0; i < 8; i++) nonce[4 + i]! ^= seqBytes[i]!;
  const body = record.subarray(RECORD_HEADER);
  if (body.length < 17) return undefined;
  try {
    const decipher =
      suite.cipher === "chacha20-poly1305" ? createDecipheriv(suite.cipher, key, nonce, { authTagLength: 16 }) : createDecipheriv(suite.cipher, key, nonce);
    decipher.setAAD(record.subarray(0, RECORD_HEADER), { plaintextLength: body.length - 16 });
    decipher.setAuthTag(body.subarray(body.length - 16));
    const inner = Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]);
    // TLSInnerPlaintext: content, content type, zero padding.
    let end = inner.length - 1;
    while (end >= 0 && inner[end] === 0) end--;
    if (end < 0 || inner[end] !== CONTENT_HANDSHAKE) return undefined;
    return inner.subarray(0, end);
  } catch {
    return undefined;
  }
}

/**
 * The number of certificate entries in the client's TLS 1.3 Certificate
 * message, read from its encrypted records with the client handshake traffic
 * secret; undefined when the records do not decrypt under that secret (they
 * belong to another connection) or hold no Certificate message.
 */
export function countClientCertificates(records: readonly Buffer[], cipherSuite: string, clientHandshakeSecretHex: string): number | undefined {
  const suite = SUITES[cipherSuite];
  if (!suite) return undefined;
  const secret = Buffer.from(clientHandshakeSecretHex, "hex");
  const key = expandLabel(suite.hash, secret, "key", suite.keyLength);
  const iv = expandLabel(suite.hash, secret, "iv", 12);
  let handshake = Buffer.alloc(0);
  for (let seq = 0; seq < records.length; seq++) {
    const plain = decryptRecord(suite, key, iv, seq, records[seq]!);
    if (!plain) return undefined;
    handshake = Buffer.concat([handshake, plain]);
    if (handshake.length < 4) continue;
    if (handshake[0] !== HANDSHAKE_CERTIFICATE) return undefined;
    const length = handshake.readUIntBE(1, 3);
    if (handshake.length < 4 + length) continue;
    return certificateEntries(handshake.subarray(4, 4 + length));
  }
  return undefined;
}

/** Certificate: context<0..255>, then entries of cert_data<1..2^24-1> and extensions<0..2^16-1>. */
function certificateEntries(body: Buffer): number | undefined {
  if (body.length < 1) return undefined;
  let at = 1 + body[0]!;
  if (body.length < at + 3) return undefined;
  const end = at + 3 + body.readUIntBE(at, 3);
  if (end !== body.length) return undefined;
  at += 3;
  let entries = 0;
  while (at < end) {
    if (at + 3 > end) return undefined;
    at += 3 + body.readUIntBE(at, 3);
    if (at + 2 > end) return undefined;
    at += 2 + body.readUInt16BE(at);
    entries++;
  }
  return at === end ? entries : undefined;
}

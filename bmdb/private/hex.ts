/** Lowercase hex of bytes, without copying them: how keys go into SQL text arrays. */
export const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

/**
 * Capturing a job's stdout and stderr: the first `limit` bytes are kept, the rest is read and
 * dropped (the job never blocks on a full pipe), and whether anything was dropped is remembered.
 */
export class OutputCapture {
  private readonly chunks: Buffer[] = [];
  private keptBytes = 0;
  private seenBytes = 0;

  constructor(readonly limit: number) {}

  write(chunk: Buffer): void {
    this.seenBytes += chunk.length;
    const room = this.limit - this.keptBytes;
    if (room <= 0) return;
    const kept = chunk.length <= room ? chunk : chunk.subarray(0, room);
    this.chunks.push(kept);
    this.keptBytes += kept.length;
  }

  /** Bytes the job wrote. */
  get total(): number {
    return this.seenBytes;
  }

  get kept(): number {
    return this.keptBytes;
  }

  get truncated(): boolean {
    return this.seenBytes > this.keptBytes;
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks, this.keptBytes);
  }

  /** The kept bytes as text; a character cut in half by the limit is dropped whole. */
  text(): string {
    const bytes = this.bytes();
    return decodeText(this.truncated ? utf8Prefix(bytes, bytes.length) : bytes);
  }
}

/**
 * The first `n` bytes of `buffer`, shortened to the last UTF-8 character boundary so that a
 * character is never cut in half. If the byte at `n` is a continuation byte, the character it
 * belongs to started before `n` and is dropped. At the end of the buffer: an incomplete last
 * sequence (its lead byte announces more bytes than follow) is dropped too.
 */
export function utf8Prefix(buffer: Buffer, n: number): Buffer {
  let end = Math.max(0, Math.min(n, buffer.length));
  if (end < buffer.length) {
    while (end > 0 && (buffer[end] & 0xc0) === 0x80) end--;
    return buffer.subarray(0, end);
  }
  // At the very end: look back at most 3 bytes for a lead byte whose sequence does not fit.
  for (let back = 1; back <= 3 && end - back >= 0; back++) {
    const byte = buffer[end - back];
    if ((byte & 0xc0) === 0x80) continue;
    const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    if (length > back) end -= back;
    break;
  }
  return buffer.subarray(0, end);
}

/**
 * Bytes as text for the protocol: UTF-8 (invalid sequences become U+FFFD), and NUL, which the
 * server refuses in text, becomes U+FFFD too.
 */
export function decodeText(buffer: Buffer): string {
  const text = buffer.toString('utf8');
  return text.includes('\u0000') ? text.replaceAll('\u0000', '\ufffd') : text;
}

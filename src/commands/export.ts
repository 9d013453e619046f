import { once } from 'node:events';
import { ConsoleLogger, type LogLevel, Logger } from '@nestjs/common';
import { LOG_START, type LogPosition } from '../modules/event-store/event-store';
import type { CommandContext } from './context';

/** A bad `--from`: the command exits 2 with this message. */
export class ExportError extends Error {}

const BATCH = 1_000;

/** `--from`: a global position (a whole number, 0 or more); 0 or none is the start of the log. */
export function parseFrom(value: string | undefined): number {
  if (value === undefined) return 0;
  const position = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isSafeInteger(position)) {
    throw new ExportError(`--from must be a global position: a whole number, 0 or more (got "${value}")`);
  }
  return position;
}

/**
 * `runway events export [--from POSITION]`: the log as NDJSON, one envelope per line exactly as
 * EventStore returns it, in log order, after the event at global position `from` (0: from the
 * start). Read and written a batch at a time, waiting for `out` to drain, so memory stays flat
 * whatever the log's size. Like every reader of the log it takes only events committed before
 * the oldest transaction still writing, so a run ends at a point with nothing missing before
 * it: resume with `--from` the last line's globalPosition. Returns the number of events written.
 */
export async function exportEvents({ store }: CommandContext, from: number, out: NodeJS.WritableStream, batchSize = BATCH): Promise<number> {
  let position: LogPosition = LOG_START;
  if (from !== 0) {
    const found = await store.positionOf(from);
    if (found === null) throw new ExportError(`--from ${from}: no event has that global position`);
    position = found;
  }
  // stdout reports a reader that went away (EPIPE) as an 'error' event, after the write.
  let failed: Error | null = null;
  const onError = (error: Error) => (failed ??= error);
  out.on('error', onError);
  try {
    let written = 0;
    for (;;) {
      const batch = await store.readAll(position, batchSize);
      if (batch.events.length > 0) {
        const chunk = batch.events.map((event) => `${JSON.stringify(event)}\n`).join('');
        const flowing = out.write(chunk) || (await drained(out));
        written += batch.events.length;
        if (!flowing && failed === null) return written; // closed under us
      }
      if (failed !== null) {
        // Whoever read the export went away (`| head`): that ends it. Any other error is one.
        if ((failed as NodeJS.ErrnoException).code === 'EPIPE') return written;
        throw failed;
      }
      if (batch.events.length < batchSize) return written;
      position = batch.last;
    }
  } finally {
    out.off('error', onError);
  }
}

/** Waits until `out` takes more (true); false if it closed or failed first. */
async function drained(out: NodeJS.WritableStream): Promise<boolean> {
  const stop = new AbortController();
  try {
    const which = await Promise.race([
      once(out, 'drain', { signal: stop.signal }).then(() => 'drain'),
      once(out, 'close', { signal: stop.signal }).then(() => 'close'),
    ]);
    return which === 'drain';
  } catch {
    return false; // an 'error' event: `onError` has it
  } finally {
    stop.abort();
  }
}

/** Nest's console logger, every level on stderr: stdout carries the export (or a JSON report) alone. */
class StderrLogger extends ConsoleLogger {
  protected override printMessages(
    messages: unknown[],
    context?: string,
    logLevel?: LogLevel,
    _stream?: 'stdout' | 'stderr',
    errorStack?: unknown,
    params?: Record<string, unknown>,
  ): void {
    super.printMessages(messages, context, logLevel, 'stderr', errorStack, params);
  }
}

/** Sends Runway's log lines to stderr, at `levels`. */
export function logToStderr(levels: LogLevel[]): void {
  Logger.overrideLogger(new StderrLogger({ logLevels: levels }));
}

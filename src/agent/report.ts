import { constants } from 'node:os';
import type { JobPayload, RunnerMessage } from '../modules/gateway/protocol';
import type { RunEnd } from './job-run';

/** The final report of a job: `completed` or `failed`, with what the job left behind. */
export type ReportFrame = Extract<RunnerMessage, { type: 'completed' } | { type: 'failed' }>;

/** Frames bigger than this are never sent, whatever the server says (25 MiB, its default). */
export const DEFAULT_MAX_MESSAGE_BYTES = 25 * 1024 * 1024;
/** Kept free below the server's limit, so a frame that fits by our count fits by its count too. */
export const FRAME_MARGIN_BYTES = 256;

/**
 * Shares `budget` among parts of the given sizes so that small parts are kept whole and the
 * biggest ones are cut to a common level (water-filling). Returns each part's allowance; the sum
 * never exceeds `budget`.
 */
export function waterfill(sizes: readonly number[], budget: number): number[] {
  const total = sizes.reduce((sum, size) => sum + size, 0);
  if (total <= budget) return [...sizes];
  const levels = sizes.map(() => 0);
  const order = sizes.map((size, index) => ({ size, index })).sort((a, b) => a.size - b.size);
  let remaining = Math.max(0, budget);
  let left = order.length;
  for (const { size, index } of order) {
    const share = Math.floor(remaining / left);
    levels[index] = Math.min(size, share);
    remaining -= levels[index];
    left -= 1;
  }
  return levels;
}

/** Bytes `text` takes inside a JSON string (without the quotes), as JSON.stringify writes it in UTF-8. */
export function jsonTextBytes(text: string): number {
  return Buffer.byteLength(JSON.stringify(text), 'utf8') - 2;
}

/**
 * The longest prefix of `text` that takes at most `maxBytes` inside a JSON string; never splits a
 * surrogate pair. A plain loop: it runs over megabytes of output.
 */
export function cutToJsonBytes(text: string, maxBytes: number): string {
  let bytes = 0;
  let i = 0;
  const length = text.length;
  while (i < length) {
    const unit = text.charCodeAt(i);
    let size: number;
    let step = 1;
    if (unit < 0x80) {
      if (unit >= 0x20) size = unit === 0x22 || unit === 0x5c ? 2 : 1; // \" \\
      else size = unit === 0x08 || unit === 0x09 || unit === 0x0a || unit === 0x0c || unit === 0x0d ? 2 : 6; // \n or \u0001
    } else if (unit < 0x800) size = 2;
    else if (unit < 0xd800 || unit > 0xdfff) size = 3;
    else if (unit <= 0xdbff && i + 1 < length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      size = 4;
      step = 2;
    } else size = 6; // a lone surrogate: \udxxx
    if (bytes + size > maxBytes) break;
    bytes += size;
    i += step;
  }
  return text.slice(0, i);
}

export const frameBytes = (frame: unknown) => Buffer.byteLength(JSON.stringify(frame), 'utf8');

/**
 * `frame` made to fit in `maxBytes` (the server closes the socket, 1009, on a bigger one):
 * stdout, stderr and the files share what is left after the fixed fields, the biggest cut first,
 * and `truncated` is set when anything was cut. Small parts (a result file) survive a huge log.
 * If even the file names do not fit, files are dropped. Sizes are computed part by part (a
 * frame's JSON is its fixed fields plus each part's escaped text), so tens of megabytes of output
 * are measured once and never stringified whole.
 */
export function fitFrame(frame: ReportFrame, maxBytes: number): ReportFrame {
  const files = frame.files === undefined ? undefined : Object.entries(frame.files);
  // As it would be sent when cut: `truncated: true` may be added.
  const skeleton: ReportFrame = { ...frame, truncated: true };
  if (frame.stdout !== undefined) skeleton.stdout = '';
  if (frame.stderr !== undefined) skeleton.stderr = '';
  if (files !== undefined) skeleton.files = Object.fromEntries(files.map(([path]) => [path, '']));
  const fixed = frameBytes(skeleton);
  const texts = [frame.stdout ?? '', frame.stderr ?? '', ...(files ?? []).map(([, content]) => content)];
  const sizes = texts.map(jsonTextBytes);
  const total = fixed + sizes.reduce((sum, size) => sum + size, 0);
  if (total <= maxBytes) return frame;
  if (fixed > maxBytes) {
    // The names alone are too much (a tiny limit): keep what can be kept without files.
    const withoutFiles: ReportFrame = { ...frame, truncated: true };
    delete withoutFiles.files;
    if (files !== undefined) return fitFrame(withoutFiles, maxBytes);
    const bare: ReportFrame = { ...withoutFiles, stdout: '', stderr: '' };
    if (bare.type === 'failed' && frameBytes(bare) > maxBytes) bare.error = cutToJsonBytes(bare.error, 1024);
    return bare;
  }
  const levels = waterfill(sizes, maxBytes - fixed);
  const cut = texts.map((text, i) => (levels[i] < sizes[i] ? cutToJsonBytes(text, levels[i]) : text));
  const fitted: ReportFrame = { ...frame, truncated: true };
  if (frame.stdout !== undefined) fitted.stdout = cut[0];
  if (frame.stderr !== undefined) fitted.stderr = cut[1];
  if (files !== undefined) fitted.files = Object.fromEntries(files.map(([path], i) => [path, cut[i + 2]]));
  return fitted;
}

/** The report without any output, for a server that refused the full one as malformed. */
export function bareReport(frame: ReportFrame): ReportFrame {
  const bare: ReportFrame = { ...frame, truncated: true };
  delete bare.stdout;
  delete bare.stderr;
  delete bare.files;
  return bare;
}

/** The report for how a run ended (docs/protocol.md, "The job lifecycle"). */
export function reportFor(job: Pick<JobPayload, 'id' | 'attempt'>, end: RunEnd): ReportFrame {
  const ref = { job: job.id, attempt: job.attempt };
  if (end.kind === 'not-started') return { type: 'failed', ...ref, error: end.error, exitCode: null };
  const output = end.output ?? { stdout: '', stderr: '', files: {}, truncated: false };
  const parts = { stdout: output.stdout, stderr: output.stderr, files: output.files, truncated: output.truncated };
  const failed = (error: string, exitCode: number | null): ReportFrame => ({ type: 'failed', ...ref, error, exitCode, ...parts });
  if (end.stoppedFor === 'timeout') return failed('timeout', null);
  if (end.stoppedFor === 'drain') return failed('runner_error: the runner was stopped and the job did not finish within the drain timeout', null);
  if (end.engineFailed) return failed('runner_error: the container engine could not run the job (exit 125)', null);
  const { code, signal } = end.exit;
  if (code === 0) return { type: 'completed', ...ref, exitCode: 0, ...parts };
  if (code !== null) return failed(`exit status ${code}`, code);
  // Killed by a signal of its own doing (a crash): the shell's convention, 128 + the signal number.
  const number = signal === null ? undefined : constants.signals[signal];
  return failed(`killed by signal ${signal ?? 'unknown'}`, number === undefined ? null : 128 + number);
}

import fc from 'fast-check';
import { bareReport, cutToJsonBytes, fitFrame, frameBytes, jsonTextBytes, type ReportFrame, waterfill } from './report';

const JOB = '01a22bb5-283f-78f9-bd87-3b6a2b5ba06c';

describe('waterfill', () => {
  it('keeps everything when it fits', () => {
    expect(waterfill([10, 20, 30], 60)).toEqual([10, 20, 30]);
  });

  it('keeps small parts whole and cuts the big ones to a common level', () => {
    expect(waterfill([10, 1000, 500], 310)).toEqual([10, 150, 150]);
    expect(waterfill([100, 100], 50)).toEqual([25, 25]);
    expect(waterfill([5, 5], 0)).toEqual([0, 0]);
  });

  it('never goes over the budget, never over a part, and wastes little', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(10_000), { maxLength: 20 }), fc.nat(50_000), (sizes, budget) => {
        const levels = waterfill(sizes, budget);
        const total = levels.reduce((a, b) => a + b, 0);
        expect(total).toBeLessThanOrEqual(Math.max(budget, 0));
        levels.forEach((level, i) => expect(level).toBeLessThanOrEqual(sizes[i]));
        const all = sizes.reduce((a, b) => a + b, 0);
        expect(total).toBeGreaterThanOrEqual(Math.min(all, budget) - sizes.length);
      }),
    );
  });
});

describe('JSON sizes', () => {
  it('jsonTextBytes is what JSON.stringify writes, in UTF-8, without the quotes', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        expect(jsonTextBytes(text)).toBe(Buffer.byteLength(JSON.stringify(text)) - 2);
      }),
    );
    expect(jsonTextBytes('a"\\\n\u0001é😀\ud800')).toBe(Buffer.byteLength(JSON.stringify('a"\\\n\u0001é😀\ud800')) - 2);
  });

  it('cutToJsonBytes takes the longest prefix that fits and never splits a surrogate pair', () => {
    expect(cutToJsonBytes('abc', 2)).toBe('ab');
    expect(cutToJsonBytes('😀😀', 5)).toBe('😀');
    expect(cutToJsonBytes('a\n', 2)).toBe('a');
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.nat(100), (text, max) => {
        const cut = cutToJsonBytes(text, max);
        expect(text.startsWith(cut)).toBe(true);
        expect(jsonTextBytes(cut)).toBeLessThanOrEqual(max);
        if (cut.length < text.length) expect(jsonTextBytes(text.slice(0, cut.length + (text.codePointAt(cut.length)! > 0xffff ? 2 : 1)))).toBeGreaterThan(max);
      }),
    );
  });
});

describe('fitFrame', () => {
  const completed = (extra: Partial<ReportFrame> = {}): ReportFrame => ({ type: 'completed', job: JOB, attempt: 1, exitCode: 0, stdout: '', stderr: '', files: {}, truncated: false, ...extra }) as ReportFrame;

  it('fits exactly when the frame had no truncated field to begin with', () => {
    const frame: ReportFrame = { type: 'failed', job: JOB, attempt: 1, error: 'exit status 1', exitCode: 1, stdout: 'y'.repeat(50_000) };
    const fitted = fitFrame(frame, 10_000);
    expect(frameBytes(fitted)).toBeLessThanOrEqual(10_000);
    expect(frameBytes(fitted)).toBeGreaterThan(9_950);
    expect(fitted.truncated).toBe(true);
  });

  it('leaves a frame that fits alone', () => {
    const frame = completed({ stdout: 'ok\n', files: { 'out/r.json': '{}' } });
    expect(fitFrame(frame, 10_000)).toEqual(frame);
  });

  it('cuts a huge log, keeps a small result file whole, and says truncated', () => {
    const frame = completed({ stdout: 'x'.repeat(200_000), stderr: 'e'.repeat(50_000), files: { 'out/r.json': '{"mean":12.5}' } });
    const fitted = fitFrame(frame, 100_000);
    expect(frameBytes(fitted)).toBeLessThanOrEqual(100_000);
    expect(frameBytes(fitted)).toBeGreaterThan(99_000);
    expect(fitted.files).toEqual({ 'out/r.json': '{"mean":12.5}' });
    expect(fitted.truncated).toBe(true);
    // The two logs share what is left.
    expect(Math.abs(fitted.stdout!.length - fitted.stderr!.length)).toBeLessThanOrEqual(1);
    expect(frame.stdout!.length).toBe(200_000); // the original is untouched
  });

  it('fits output that JSON escaping makes bigger (control characters, quotes, multibyte)', () => {
    const nasty = '\u0001"\\é😀\n'.repeat(20_000);
    const fitted = fitFrame(completed({ stdout: nasty, stderr: nasty, files: { a: nasty } }), 50_000);
    expect(frameBytes(fitted)).toBeLessThanOrEqual(50_000);
    expect(fitted.truncated).toBe(true);
  });

  it('holds for any output and limit', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 3000 }),
        fc.string({ unit: 'binary', maxLength: 3000 }),
        fc.dictionary(fc.string({ minLength: 1, maxLength: 20 }), fc.string({ unit: 'binary', maxLength: 2000 }), { maxKeys: 5 }),
        fc.integer({ min: 1024, max: 20_000 }),
        fc.constantFrom(undefined, false, true),
        (stdout, stderr, files, limit, truncated) => {
          const frame = completed({ stdout, stderr, files, truncated });
          if (truncated === undefined) delete frame.truncated;
          const fitted = fitFrame(frame, limit);
          expect(frameBytes(fitted)).toBeLessThanOrEqual(limit);
          expect(stdout.startsWith(fitted.stdout ?? '')).toBe(true);
        },
      ),
    );
  });

  it('drops the files when not even their names fit', () => {
    const files = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`${'d/'.repeat(40)}file-${i}`, 'x']));
    const fitted = fitFrame(completed({ stdout: 'log', files }), 1024);
    expect(frameBytes(fitted)).toBeLessThanOrEqual(1024);
    expect(fitted.files).toBeUndefined();
    expect(fitted.truncated).toBe(true);
  });

  it('bareReport keeps the outcome and drops the output', () => {
    const frame: ReportFrame = { type: 'failed', job: JOB, attempt: 2, error: 'exit status 3', exitCode: 3, stdout: 'x', files: { a: 'b' } };
    expect(bareReport(frame)).toEqual({ type: 'failed', job: JOB, attempt: 2, error: 'exit status 3', exitCode: 3, truncated: true });
  });
});

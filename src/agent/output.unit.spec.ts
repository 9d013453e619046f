import fc from 'fast-check';
import { decodeText, OutputCapture, utf8Prefix } from './output';

describe('OutputCapture', () => {
  it('keeps the first bytes up to the limit, counts the rest and says it was truncated', () => {
    const capture = new OutputCapture(10);
    capture.write(Buffer.from('hello '));
    capture.write(Buffer.from('world, and more'));
    capture.write(Buffer.from('even more'));
    expect(capture.text()).toBe('hello worl');
    expect(capture.kept).toBe(10);
    expect(capture.total).toBe(30);
    expect(capture.truncated).toBe(true);
  });

  it('is not truncated when everything fit, even exactly', () => {
    const capture = new OutputCapture(5);
    capture.write(Buffer.from('hello'));
    expect([capture.text(), capture.truncated]).toEqual(['hello', false]);
  });

  it('keeps nothing with a limit of 0 but still knows there was output', () => {
    const capture = new OutputCapture(0);
    capture.write(Buffer.from('x'));
    expect([capture.text(), capture.truncated, capture.total]).toEqual(['', true, 1]);
  });

  it('drops a character cut in half by the limit instead of sending a broken one', () => {
    const capture = new OutputCapture(7);
    capture.write(Buffer.from('abc€€')); // € is 3 bytes: abc + € + 1 byte of the second
    expect(capture.text()).toBe('abc€');
  });
});

describe('utf8Prefix', () => {
  it('never splits a character, for 2, 3 and 4 byte characters', () => {
    const text = 'aé€😀b';
    const bytes = Buffer.from(text);
    const prefixes = Array.from({ length: bytes.length + 1 }, (_, n) => utf8Prefix(bytes, n).toString('utf8'));
    expect(prefixes).toEqual(['', 'a', 'a', 'aé', 'aé', 'aé', 'aé€', 'aé€', 'aé€', 'aé€', 'aé€😀', 'aé€😀b']);
  });

  it('drops an incomplete sequence at the very end', () => {
    expect(utf8Prefix(Buffer.from([0x61, 0xe2, 0x82]), 3)).toEqual(Buffer.from('a'));
  });

  it('is always a prefix that decodes without replacement characters', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.nat(200), (text, n) => {
        const bytes = Buffer.from(text);
        const prefix = utf8Prefix(bytes, n);
        expect(prefix.length).toBeLessThanOrEqual(Math.min(n, bytes.length));
        expect(bytes.subarray(0, prefix.length).equals(prefix)).toBe(true);
        expect(prefix.length).toBeGreaterThan(Math.min(n, bytes.length) - 4);
        expect(text.startsWith(prefix.toString('utf8'))).toBe(true);
      }),
    );
  });
});

describe('decodeText', () => {
  it('replaces NUL (the server refuses it in text) and invalid UTF-8 with U+FFFD', () => {
    expect(decodeText(Buffer.from([0x61, 0x00, 0x62, 0xff]))).toBe('a\ufffdb\ufffd');
  });
});

import { MAX_JSON_DEPTH, findUnstorable, printable, textProblem } from './storable';

const nest = (depth: number): unknown => (depth === 0 ? 'leaf' : [nest(depth - 1)]);

describe('textProblem', () => {
  it.each([
    ['plain', null],
    ['', null],
    ['emoji 💥 pair \ud83d\udca5', null],
    ['a\u0000b', 'contains a NUL character (U+0000)'],
    ['\ud800', 'contains a lone UTF-16 surrogate (not valid Unicode)'],
    ['x\udc00', 'contains a lone UTF-16 surrogate (not valid Unicode)'],
    ['\udc00\ud800', 'contains a lone UTF-16 surrogate (not valid Unicode)'],
  ])('%j -> %j', (text, problem) => {
    expect(textProblem(text)).toBe(problem);
  });
});

describe('findUnstorable', () => {
  it('names the first string, key or level that cannot be stored', () => {
    expect(findUnstorable({ cmd: ['ok', 'x\ud800'] })).toEqual({ field: 'cmd[1]', message: 'cmd[1] contains a lone UTF-16 surrogate (not valid Unicode)' });
    expect(findUnstorable({ env: { HOME: '\u0000' } })?.field).toBe('env.HOME');
    expect(findUnstorable({ env: { 'A\u0000': 'x' } })).toEqual({ field: 'env.A\ufffd', message: 'the field name "env.A\ufffd" contains a NUL character (U+0000)' });
    expect(findUnstorable('\ud800')?.message).toBe('the value contains a lone UTF-16 surrogate (not valid Unicode)');
    expect(findUnstorable({ a: 1, b: [true, null, { c: 'fine 💥' }] })).toBeNull();
  });

  it(`allows ${MAX_JSON_DEPTH} levels of nesting and no more`, () => {
    expect(findUnstorable(nest(MAX_JSON_DEPTH))).toBeNull();
    expect(findUnstorable(nest(MAX_JSON_DEPTH + 1))?.message).toMatch(/nested deeper than 64 levels$/);
    expect(findUnstorable(JSON.parse('['.repeat(100_000) + ']'.repeat(100_000)))?.message).toMatch(/nested deeper/);
    expect(findUnstorable(nest(3), '', 2)?.message).toMatch(/nested deeper than 2 levels$/);
  });
});

describe('printable', () => {
  it('replaces NUL and lone surrogates, keeps pairs', () => {
    expect(printable('a\u0000b\ud800c\ud83d\udca5')).toBe('a\ufffdb\ufffdc\ud83d\udca5');
  });
});

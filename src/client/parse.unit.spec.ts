import { ArgumentError, collect, parseBytes, parseDurationSeconds, parseEnvPair, parseInteger, parseLimit } from './parse';
import { DEFAULT_URL, resolveSettings } from './settings';

describe('--env NAME=VALUE', () => {
  it('splits at the first =, keeps empty values and values with =, and accumulates', () => {
    let env = parseEnvPair('A=1');
    env = parseEnvPair('B=', env);
    env = parseEnvPair('RUSTFLAGS=-C target-cpu=native', env);
    expect(env).toEqual({ A: '1', B: '', RUSTFLAGS: '-C target-cpu=native' });
  });

  it('refuses a missing =, an empty or invalid name, and a name given twice', () => {
    expect(() => parseEnvPair('A')).toThrow(ArgumentError);
    expect(() => parseEnvPair('=1')).toThrow('expected NAME=VALUE');
    expect(() => parseEnvPair('1A=b')).toThrow('not a variable name');
    expect(() => parseEnvPair('A-B=c')).toThrow('not a variable name');
    expect(() => parseEnvPair('A=2', { A: '1' })).toThrow('A is given twice');
  });

  it('does not let a name reach the prototype', () => {
    const env = parseEnvPair('__proto__=x');
    expect(Object.getPrototypeOf(env)).toBe(Object.prototype);
    expect(Object.keys(env)).toEqual(['__proto__']);
  });
});

describe('repeatable options', () => {
  it('collect appends in order', () => {
    expect(collect('b', collect('a'))).toEqual(['a', 'b']);
    expect(collect('-c', ['/bin/sh'])).toEqual(['/bin/sh', '-c']);
  });
});

describe('whole numbers', () => {
  it('reads numbers in range', () => {
    expect(parseInteger('5', 1, 5)).toBe(5);
    expect(parseInteger(' 42 ')).toBe(42);
  });

  it('refuses fractions, words, and numbers out of range', () => {
    expect(() => parseInteger('1.5')).toThrow('expected a whole number');
    expect(() => parseInteger('ten')).toThrow('expected a whole number');
    expect(() => parseInteger('0')).toThrow('at least 1');
    expect(() => parseInteger('6', 1, 5)).toThrow('from 1 to 5');
    expect(() => parseInteger('99999999999999999999')).toThrow(ArgumentError);
  });

  it('--max-concurrency takes none for no limit', () => {
    expect(parseLimit('none')).toBe('none');
    expect(parseLimit('NONE')).toBe('none');
    expect(parseLimit('3')).toBe(3);
    expect(() => parseLimit('0')).toThrow(ArgumentError);
  });
});

describe('--timeout', () => {
  it.each([
    ['900', 900],
    ['90s', 90],
    ['15m', 900],
    ['1h30m', 5_400],
    ['2d', 172_800],
    ['1h0m5s', 3_605],
    ['1H', 3_600],
  ])('%s is %d seconds', (text, seconds) => {
    expect(parseDurationSeconds(text)).toBe(seconds);
  });

  it.each(['', '0', '0s', '1.5h', '15 minutes', 'm', '30s1m', '-5'])('refuses %j', (text) => {
    expect(() => parseDurationSeconds(text)).toThrow(ArgumentError);
  });
});

describe('sizes', () => {
  it.each([
    ['1024', 1024],
    ['32GiB', 32 * 2 ** 30],
    ['32Gi', 32 * 2 ** 30],
    ['32 gib', 32 * 2 ** 30],
    ['500GB', 500e9],
    ['500G', 500e9],
    ['1.5KiB', 1536],
    ['2TiB', 2 * 2 ** 40],
  ])('%s is %d bytes', (text, bytes) => {
    expect(parseBytes(text)).toBe(bytes);
  });

  it.each(['', 'GiB', '32XB', '0', '0.1', '1.1B', '-1GiB'])('refuses %j', (text) => {
    expect(() => parseBytes(text)).toThrow(ArgumentError);
  });
});

describe('settings: --url and --token win over RUNWAY_URL and RUNWAY_TOKEN', () => {
  it('defaults to the local server and no token', () => {
    expect(resolveSettings({}, {})).toEqual({ url: DEFAULT_URL, token: undefined });
    expect(resolveSettings({}, { RUNWAY_URL: '  ', RUNWAY_TOKEN: '' })).toEqual({ url: DEFAULT_URL, token: undefined });
  });

  it('reads the environment, and the flags over it', () => {
    const env = { RUNWAY_URL: 'https://runway.example.com/', RUNWAY_TOKEN: 'runway_key_env' };
    expect(resolveSettings({}, env)).toEqual({ url: 'https://runway.example.com', token: 'runway_key_env' });
    expect(resolveSettings({ url: 'http://10.0.0.1:9000', token: 'runway_key_flag' }, env)).toEqual({
      url: 'http://10.0.0.1:9000',
      token: 'runway_key_flag',
    });
  });

  it('keeps a path prefix (a server behind a proxy)', () => {
    expect(resolveSettings({ url: 'https://ci.example.com/runway/' }, {}).url).toBe('https://ci.example.com/runway');
  });

  it('refuses what is not an http(s) URL', () => {
    expect(() => resolveSettings({ url: 'localhost:8080' }, {})).toThrow('must start with http:// or https://');
    expect(() => resolveSettings({ url: 'not a url' }, {})).toThrow('is not a URL');
    expect(() => resolveSettings({}, { RUNWAY_URL: 'ftp://x' })).toThrow(ArgumentError);
    expect(() => resolveSettings({ url: 'http://x/?a=1' }, {})).toThrow('query');
  });
});

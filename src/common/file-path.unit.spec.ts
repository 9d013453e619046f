import { refuseFilePath } from './file-path';

describe('refuseFilePath', () => {
  it.each([
    ['out/result.json', null],
    ['result.json', null],
    ['./out/./x', null],
    ['a..b/c..', null],
    ['.hidden', null],
    ['a\\b', null],
    ['C:x', null],
    ['', 'empty path'],
    ['a\u0000b', 'path contains NUL'],
    ['/etc/passwd', 'absolute path'],
    ['\\\\server\\share', 'absolute path'],
    ['C:\\Windows', 'absolute path'],
    ['c:/x', 'absolute path'],
    ['../../etc/passwd', 'path contains ..'],
    ['out/..', 'path contains ..'],
    ['a\\..\\b', 'path contains ..'],
    ['a//b', 'path has an empty segment'],
    ['out/', 'path has an empty segment'],
  ])('%j -> %j', (path, reason) => {
    expect(refuseFilePath(path)).toBe(reason);
  });
});

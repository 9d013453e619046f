import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { locateFiles, readFilePrefix, refusePath } from './files';

describe('refusePath', () => {
  it.each([
    ['out/result.json', null],
    ['result.json', null],
    ['./out/./x', null],
    ['a..b/c..', null],
    ['', 'empty path'],
    ['/etc/passwd', 'absolute path'],
    ['../secret', 'path contains ..'],
    ['out/../../secret', 'path contains ..'],
    ['out/..', 'path contains ..'],
    ['a\u0000b', 'path contains NUL'],
  ])('%j -> %j', (path, reason) => {
    expect(refusePath(path)).toBe(reason);
  });
});

describe('locateFiles / readFilePrefix', () => {
  let root: string;
  let work: string;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'runway-files-'));
    work = join(root, 'work');
    await mkdir(join(work, 'out'), { recursive: true });
    await writeFile(join(root, 'secret'), 'the host secret');
    await writeFile(join(work, 'out', 'result.json'), '{"mean":12.5}');
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('finds regular files inside the work directory and skips missing ones', async () => {
    const located = await locateFiles(work, ['out/result.json', 'missing.txt'], 255);
    expect(located.found).toEqual([{ path: 'out/result.json', real: expect.stringContaining('result.json'), size: 13 }]);
    expect(located.skipped).toEqual([{ path: 'missing.txt', reason: 'missing' }]);
    expect(located.overLimit).toBe(false);
    expect((await readFilePrefix(located.found[0], 1000)).toString()).toBe('{"mean":12.5}');
    expect((await readFilePrefix(located.found[0], 5)).toString()).toBe('{"mea');
  });

  it('refuses absolute paths, .., and symlinks that lead outside', async () => {
    await symlink(join(root, 'secret'), join(work, 'link-out'));
    await symlink('../..', join(work, 'out', 'up'));
    await symlink('out/result.json', join(work, 'link-in'));
    const located = await locateFiles(work, ['/etc/passwd', '../secret', 'link-out', 'out/up/secret', 'link-in'], 255);
    expect(located.found.map((file) => file.path)).toEqual(['link-in']);
    expect(located.skipped).toEqual([
      { path: '/etc/passwd', reason: 'absolute path' },
      { path: '../secret', reason: 'path contains ..' },
      { path: 'link-out', reason: 'resolves outside the work directory' },
      { path: 'out/up/secret', reason: 'resolves outside the work directory' },
    ]);
  });

  it('skips directories and FIFOs without blocking on them', async () => {
    execFileSync('mkfifo', [join(work, 'fifo')]);
    const located = await locateFiles(work, ['out', 'fifo'], 255);
    expect(located.found).toEqual([]);
    expect(located.skipped).toEqual([
      { path: 'out', reason: 'not a regular file' },
      { path: 'fifo', reason: 'not a regular file' },
    ]);
  });

  it('reads at most maxFiles paths and says there were more', async () => {
    await writeFile(join(work, 'a'), 'a');
    await writeFile(join(work, 'b'), 'b');
    const located = await locateFiles(work, ['a', 'b', 'out/result.json', 'a'], 2);
    expect(located.found.map((file) => file.path)).toEqual(['a', 'b']);
    expect(located.overLimit).toBe(true);
  });
});

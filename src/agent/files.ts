import { constants } from 'node:fs';
import { type FileHandle, open, realpath } from 'node:fs/promises';
import { isAbsolute, join, sep } from 'node:path';
import { refuseFilePath } from '../common/file-path';

/**
 * The files a job asked to have read back (`filePaths`), taken only from inside its work
 * directory: absolute paths and `..` are refused outright, and a path whose real location (after
 * symlinks) is outside the work directory is refused as well. Only regular files are read, so a
 * FIFO or a device named by a job cannot hang or flood the runner.
 */

/**
 * Why a requested path is refused, or null when it is a plain relative path: the API's rule
 * (common/file-path), and whatever this platform calls absolute.
 */
export function refusePath(path: string): string | null {
  return refuseFilePath(path) ?? (isAbsolute(path) ? 'absolute path' : null);
}

export interface FoundFile {
  /** As the job named it: the key in `files`. */
  path: string;
  real: string;
  size: number;
}

export interface SkippedFile {
  path: string;
  reason: string;
}

export interface LocatedFiles {
  found: FoundFile[];
  skipped: SkippedFile[];
  /** More paths than `maxFiles` were asked for. */
  overLimit: boolean;
}

const within = (root: string, real: string) => real === root || real.startsWith(root.endsWith(sep) ? root : root + sep);

/** Finds the requested files (at most `maxFiles`); missing ones are skipped, never an error. */
export async function locateFiles(workDir: string, paths: readonly string[], maxFiles: number): Promise<LocatedFiles> {
  const root = await realpath(workDir);
  const unique = [...new Set(paths)];
  const result: LocatedFiles = { found: [], skipped: [], overLimit: unique.length > maxFiles };
  for (const path of unique.slice(0, maxFiles)) {
    const refused = refusePath(path);
    if (refused !== null) {
      result.skipped.push({ path, reason: refused });
      continue;
    }
    let real: string;
    try {
      real = await realpath(join(root, path));
    } catch (error) {
      result.skipped.push({ path, reason: (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (error as Error).message });
      continue;
    }
    if (!within(root, real)) {
      result.skipped.push({ path, reason: 'resolves outside the work directory' });
      continue;
    }
    const file = await openRegular(real);
    if (typeof file === 'string') {
      result.skipped.push({ path, reason: file });
      continue;
    }
    try {
      result.found.push({ path, real, size: (await file.stat()).size });
    } finally {
      await file.close();
    }
  }
  return result;
}

/** Opens a regular file without following a symlink or blocking on a FIFO; a string says why not. */
async function openRegular(real: string): Promise<FileHandle | string> {
  let file: FileHandle;
  try {
    file = await open(real, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW | constants.O_NOCTTY);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (error as Error).message;
  }
  const stats = await file.stat();
  if (!stats.isFile()) {
    await file.close();
    return 'not a regular file';
  }
  return file;
}

/** At most the first `limit` bytes of a file found by `locateFiles`. */
export async function readFilePrefix(file: FoundFile, limit: number): Promise<Buffer> {
  const opened = await openRegular(file.real);
  if (typeof opened === 'string') throw new Error(`${file.path}: ${opened}`);
  try {
    const buffer = Buffer.alloc(Math.max(0, Math.min(limit, file.size)));
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await opened.read(buffer, filled, buffer.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buffer.subarray(0, filled);
  } finally {
    await opened.close();
  }
}

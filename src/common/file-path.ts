/**
 * The rule for `filePaths`, the files a job asks its runner to read back: plain relative paths
 * inside the job's work directory. The API refuses other paths at submission, and the runner
 * agent refuses them again before it reads anything (it also refuses a path whose real location,
 * after symlinks, is outside the work directory, which only the runner can see).
 *
 * No dependencies: the API and the runner agent both import it.
 */

/** Why a requested path is refused, or null when it is a plain relative path. */
export function refuseFilePath(path: string): string | null {
  if (path === '') return 'empty path';
  if (path.includes('\u0000')) return 'path contains NUL';
  if (/^(?:[/\\]|[A-Za-z]:[/\\])/.test(path)) return 'absolute path';
  const segments = path.split(/[/\\]/);
  if (segments.includes('..')) return 'path contains ..';
  if (segments.includes('')) return 'path has an empty segment';
  return null;
}

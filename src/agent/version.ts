import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** `runway-runner/<package version>`, as `hello` reports it; found from this file up (src/ or dist/src/). */
export function agentVersion(from = __dirname): string {
  let dir = from;
  for (let depth = 0; depth < 5; depth++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'runway' && typeof pkg.version === 'string') return `runway-runner/${pkg.version}`.slice(0, 64);
    } catch {
      // not here
    }
    dir = dirname(dir);
  }
  return 'runway-runner/unknown';
}

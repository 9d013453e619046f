import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateToken, hashToken } from './tokens';

export const ADMIN_TOKEN_HASH_FILE = 'admin-token.sha256';

/**
 * The SHA-256 of the operator token: of RUNWAY_ADMIN_TOKEN when set, else of a token generated on
 * first start. Only the hash is kept in the data directory; the generated token is returned once
 * so the caller can print it. Delete the file to have a new one generated.
 */
export async function resolveAdminToken(
  configured: string | null,
  dataDir: string,
): Promise<{ hash: string; generated: string | null }> {
  if (configured !== null) return { hash: hashToken(configured), generated: null };
  const file = join(dataDir, ADMIN_TOKEN_HASH_FILE);
  try {
    const stored = (await readFile(file, 'utf8')).trim();
    if (/^[0-9a-f]{64}$/.test(stored)) return { hash: stored, generated: null };
    throw new Error(`${file} does not hold a SHA-256 hex digest; delete it to generate a new admin token`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(dataDir, { recursive: true });
  const token = generateToken('admin');
  const hash = hashToken(token);
  // 'wx': if another instance created it in the meantime, do not overwrite its token.
  try {
    await writeFile(file, `${hash}\n`, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return resolveAdminToken(null, dataDir);
    throw error;
  }
  return { hash, generated: token };
}

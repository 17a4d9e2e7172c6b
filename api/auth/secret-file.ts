/**
 * Secrets the backend makes for itself and keeps in DATA_DIR (the local admin token, the session key): made
 * once with mode 0600, and on every later start read only after checking nobody else could have read or changed them.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

/** Thrown when a secret file exists but cannot be trusted: not a regular file, not ours, open to others, malformed. */
export class SecretFileError extends Error {
  override readonly name = 'SecretFileError';
}

/**
 * The secret in `file`, trimmed: written from `make()` with mode 0600 when the file is missing (exclusive create,
 * so two starts never both write), else read after checking it. `what` names the secret in errors.
 */
export async function ensureSecretFile(file: string, make: () => string, what: string): Promise<string> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  try {
    const handle = await fs.open(file, 'wx', 0o600);
    const secret = make();
    try {
      await handle.writeFile(`${secret}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return secret;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const again = `remove it and restart for a new ${what}`;
  const st = await fs.lstat(file);
  if (!st.isFile()) throw new SecretFileError(`${file} is not a regular file; ${again}`);
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) throw new SecretFileError(`${file} belongs to another user (uid ${st.uid}); ${again}`);
  if ((st.mode & 0o077) !== 0) {
    throw new SecretFileError(`${file} is readable or writable by others (mode ${(st.mode & 0o777).toString(8)}), so its ${what} may have leaked; ${again}`);
  }
  return (await fs.readFile(file, 'utf8')).trim();
}

/**
 * Secrets read from files: a regular file other users cannot read, outside DATA_DIR where it must not be seen by
 * sandboxes, long enough; one trailing newline is not part of the secret.
 */
import fs from 'node:fs';
import path from 'node:path';
import { MIN_SECRET_CHARS } from '../activities/egress/token';
import { isWithin } from '../domain/repo-policy';
import { ConfigError } from './config-error';

/** Bits of a file mode that let users other than the owner and the group read it. */
const WORLD_READABLE = 0o004;

/**
 * The secret in EGRESS_PROXY_SECRET_FILE (one trailing newline dropped), checked: a regular file others
 * cannot read, long enough. Throws a {@link ConfigError} naming the variable otherwise.
 */
export function readEgressProxySecret(file: string): string {
  return readPrivateSecret('EGRESS_PROXY_SECRET_FILE', file, MIN_SECRET_CHARS);
}

/** The secret in the file variable `name` names as `value`, refused inside DATA_DIR (sandboxes see what is there), read as {@link readPrivateSecret} reads it. */
export function readSecretFile(name: string, value: string, dataDir: string, minChars: number): string {
  const file = path.resolve(value);
  if (isWithin(file, dataDir)) throw new ConfigError(`invalid configuration: ${name}: must not be inside DATA_DIR`);
  return readPrivateSecret(name, file, minChars);
}

/** The secret in the file variable `name` names (one trailing newline dropped): a regular file others cannot read, at least `minChars` long. */
function readPrivateSecret(name: string, file: string, minChars: number): string {
  const bad = (why: string) => new ConfigError(`invalid configuration: ${name}: ${why}`);
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    throw bad(`no file at ${file}`);
  }
  if (!stat.isFile()) throw bad(`${file} is not a regular file`);
  if ((stat.mode & WORLD_READABLE) !== 0) throw bad(`${file} is readable by every user (mode ${(stat.mode & 0o777).toString(8)}); make it 0600 or 0440`);
  const secret = fs.readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  if (secret.length < minChars) throw bad(minChars <= 1 ? 'the file is empty' : `the secret is shorter than ${minChars} characters`);
  return secret;
}

/**
 * Small files of the API's own under DATA_DIR (API tokens, ended sessions): read again only when they changed on
 * disk, and replaced whole through a private temporary file, so a reader never sees half of one.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** What `file` is now (inode, size, mtime) and its mode, to tell a change without reading it; null when it does not exist. */
export function fileStamp(file: string): { stamp: string; mode: number } | null {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return null;
  }
  return { stamp: `${st.ino}:${st.size}:${st.mtimeMs}`, mode: st.mode };
}

/** Replaces `file` with `text`: written and synced to a temporary file of mode 0600 beside it, then renamed over it. */
export function replacePrivateFile(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/**
 * Sessions signed out before their cookies expire, kept in `DATA_DIR/ended-sessions.json` (mode 0600): a
 * signed-out cookie stays refused after a restart, and by every API process sharing the data directory.
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { withFileLockSync } from '../../workers/file-lock';
import { fileStamp, replacePrivateFile } from './private-file';

/** The file's name under DATA_DIR. */
export const ENDED_SESSIONS_FILE = 'ended-sessions.json';
/** How long a sign-out waits for another process writing the file before breaking its lock. */
const LOCK_WAIT_MS = 10_000;

const EndedFile = z.object({ ended: z.record(z.string(), z.number()) });

/** Thrown when the file is not ours to trust (not JSON of this shape): every session is refused until it is fixed. */
export class EndedSessionsError extends Error {
  override readonly name = 'EndedSessionsError';
}

/** Ended session ids until the time their cookies would have expired anyway; re-read when the file changed. */
export class EndedSessions {
  private until = new Map<string, number>();
  /** What the file was when last read (inode, size, mtime), or null when it did not exist. */
  private seen: string | null = null;

  constructor(private readonly file: string) {}

  /** The ended sessions of the data directory `dataDir`. */
  static in(dataDir: string): EndedSessions {
    return new EndedSessions(path.join(dataDir, ENDED_SESSIONS_FILE));
  }

  /** Whether session `sid` was signed out. */
  has(sid: string): boolean {
    this.refresh();
    return this.until.has(sid);
  }

  /** Records session `sid` as ended until `untilMs`, dropping entries whose cookies have expired by `nowMs`. */
  add(sid: string, untilMs: number, nowMs: number): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    withFileLockSync(`${this.file}.lock`, { waitLimitMs: LOCK_WAIT_MS }, () => {
      this.seen = null;
      this.refresh();
      const kept = [...this.until].filter(([, u]) => u > nowMs);
      this.write(Object.fromEntries([...kept, [sid, untilMs]]));
    });
  }

  private refresh(): void {
    const now = fileStamp(this.file);
    if (now === null) {
      this.until = new Map();
      this.seen = null;
      return;
    }
    if (now.stamp === this.seen) return;
    let parsed: z.infer<typeof EndedFile>;
    try {
      parsed = EndedFile.parse(JSON.parse(fs.readFileSync(this.file, 'utf8')));
    } catch (err) {
      throw new EndedSessionsError(`${this.file} is not a list of ended sessions: ${(err as Error).message}`);
    }
    this.until = new Map(Object.entries(parsed.ended));
    this.seen = now.stamp;
  }

  /** Writes the whole file to a private temporary file and renames it over the old one. */
  private write(ended: Record<string, number>): void {
    replacePrivateFile(this.file, `${JSON.stringify({ ended })}\n`);
    this.seen = null;
    this.refresh();
  }
}

/**
 * A streaming check of an untrusted tar archive, placed between the stream that brings it and
 * the host `tar -x` that unpacks it. Bytes pass through unchanged, a header only once it has
 * been checked, so nothing refused ever reaches the host's tar.
 *
 * Accepted: regular files, directories and symlinks in ustar or GNU headers, with GNU long
 * names (`L`/`K`) and pax extended headers (`x`) of a few known keys. Refused: every other
 * member type (FIFOs, devices, hard links, sparse files, GNU dumpdirs, volume headers, pax
 * global headers), absolute names, `..`, members reached through an earlier symlink, duplicate
 * names, a bad checksum, and any framing GNU tar could read differently from this parser
 * (a directory or symlink with data, a regular file named with a trailing slash). The archive's
 * length is measured on the stream itself; a header declaring more than is left is refused at
 * once, so a sparse 4 GiB file costs one header, not 4 GiB. A caller may add its own rule on
 * each member ({@link MemberCheck}), refused the same way before the member's header passes.
 */
import { Transform, type TransformCallback } from 'node:stream';

/** Size of a tar block: headers and data are padded to it. */
export const TAR_BLOCK = 512;
/** Longest member name or link target accepted (Linux `PATH_MAX`). */
const MAX_NAME_BYTES = 4096;
/** Largest pax extended header accepted; ours only carry names, times and sizes. */
const MAX_PAX_BYTES = 64 * 1024;
/** Pax keys GNU tar honours on extraction without changing a member's type or layout. */
const PAX_KEYS = new Set(['path', 'linkpath', 'size', 'mtime', 'atime', 'ctime', 'uid', 'gid', 'uname', 'gname', 'charset', 'hdrcharset', 'comment']);

const TYPE_NAMES: Record<string, string> = {
  '1': 'a hard link',
  '3': 'a character device',
  '4': 'a block device',
  '6': 'a FIFO',
  '7': 'a contiguous file',
  S: 'a sparse file',
  D: 'a GNU directory dump',
  M: 'a multi-volume continuation',
  V: 'a volume label',
  N: 'an old GNU long name',
  g: 'a pax global header',
  X: 'a Solaris extended header',
};

/** What one archive may hold at most. */
export interface TarLimits {
  /** Bytes of the archive itself (headers, data and padding), measured as they arrive. */
  maxBytes: number;
  /** Members (files, directories and symlinks). */
  maxMembers: number;
}

/** Thrown (as the guard's stream error) when an archive holds something the worker refuses. */
export class TarRefusedError extends Error {
  override readonly name = 'TarRefusedError';
  /** The member's name as the archive gives it (decoded as UTF-8), when the refusal is about one member. */
  readonly member: string | null;

  constructor(
    message: string,
    member: string | null,
    /** Why, in a word: `type`, `name`, `bytes`, `members` or `format`. */
    readonly reason: 'type' | 'name' | 'bytes' | 'members' | 'format',
  ) {
    super(message);
    this.member = member === null ? null : utf8(member);
  }
}

/** One member as the guard passes it on, for a caller's own check ({@link MemberCheck}). */
export interface TarMember {
  /** The member's path, normalized (no `./`, no empty components), decoded as UTF-8. */
  name: string;
  type: 'file' | 'directory' | 'symlink';
  /** Permission bits from the header. */
  mode: number;
}

/** A caller's rule on top of the guard's own: a refusal message for `member`, or null to let it pass. */
export type MemberCheck = (member: TarMember) => string | null;

interface Pending {
  /** Raw blocks of extended headers, held back until the member they describe is checked. */
  blocks: Buffer[];
  longName?: string;
  longLink?: string;
  pax?: Map<string, string>;
}

/** Passes a tar stream through unchanged while refusing what the module comment lists; see {@link TarLimits}. */
export class TarGuard extends Transform {
  private phase: 'header' | 'ext' | 'data' | 'end' = 'header';
  /** Bytes of the header or extended header being gathered. */
  private acc: Buffer[] = [];
  private accLength = 0;
  /** Bytes still needed: of the header/extended header being gathered, or of the member's data and padding. */
  private need = TAR_BLOCK;
  /** Size of the extended header's payload (the rest of `need` is padding). */
  private extSize = 0;
  private extKind: 'x' | 'L' | 'K' = 'x';
  private pending: Pending = { blocks: [] };
  /** Offset in the archive of the next byte the parser reads. */
  private offset = 0;
  private received = 0;
  private memberCount = 0;
  private readonly names = new Set<string>();
  private readonly symlinks = new Set<string>();

  constructor(
    private readonly limits: TarLimits,
    /** Asked about each member after the guard's own checks passed it, before its header is passed on. */
    private readonly checkMember?: MemberCheck,
  ) {
    super();
  }

  /** Bytes of the archive received so far (including any that followed its end marker). */
  get bytes(): number {
    return this.received;
  }

  /** Members checked and passed on so far. */
  get members(): number {
    return this.memberCount;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.received += chunk.length;
    try {
      if (this.received > this.limits.maxBytes) {
        throw new TarRefusedError(`the archive is larger than the copy-back limit of ${this.limits.maxBytes} bytes`, null, 'bytes');
      }
      this.consume(chunk);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    if (this.phase === 'end') return cb();
    cb(new TarRefusedError(`the archive is cut short (${this.offset} bytes, no end-of-archive marker)`, null, 'format'));
  }

  private consume(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.phase === 'end') return;
      const n = Math.min(this.need, chunk.length - at);
      const piece = chunk.subarray(at, at + n);
      at += n;
      this.offset += n;
      this.need -= n;
      if (this.phase === 'data') {
        this.push(piece);
        if (this.need === 0) {
          this.phase = 'header';
          this.need = TAR_BLOCK;
        }
        continue;
      }
      this.acc.push(piece);
      this.accLength += n;
      if (this.need > 0) continue;
      const whole = Buffer.concat(this.acc, this.accLength);
      this.acc = [];
      this.accLength = 0;
      if (this.phase === 'header') this.header(whole);
      else this.extended(whole);
    }
  }

  private header(block: Buffer): void {
    if (block.every((b) => b === 0)) {
      if (this.pending.blocks.length > 0) throw new TarRefusedError('the archive ends right after an extended header', null, 'format');
      // GNU tar stops at the first zero block; two of them end the archive for any reader, and nothing after is passed on.
      this.push(block);
      this.push(Buffer.alloc(TAR_BLOCK));
      this.push(null);
      this.phase = 'end';
      return;
    }
    checkChecksum(block, this.offset - TAR_BLOCK);
    const magic = block.subarray(257, 265).toString('latin1');
    const posix = magic.startsWith('ustar\0');
    if (!posix && magic !== 'ustar  \0') throw new TarRefusedError(`not a ustar or GNU tar header at byte ${this.offset - TAR_BLOCK}`, null, 'format');
    const type = String.fromCharCode(block[156]!);
    const headerSize = parseNumber(block.subarray(124, 136), 'size', this.offset - TAR_BLOCK);

    if (type === 'x' || type === 'L' || type === 'K') {
      const max = type === 'x' ? MAX_PAX_BYTES : MAX_NAME_BYTES + 1;
      const kind = type === 'x' ? 'pax extended header' : type === 'L' ? 'GNU long name' : 'GNU long link name';
      if (headerSize > max) throw new TarRefusedError(`a ${kind} of ${headerSize} bytes is larger than ${max}`, null, 'format');
      const present = type === 'x' ? this.pending.pax : type === 'L' ? this.pending.longName : this.pending.longLink;
      if (present !== undefined) throw new TarRefusedError(`two ${kind}s for one member`, null, 'format');
      this.pending.blocks.push(block);
      this.extKind = type;
      this.extSize = headerSize;
      this.need = padded(headerSize);
      if (this.need === 0) this.extended(Buffer.alloc(0));
      else this.phase = 'ext';
      return;
    }

    const pending = this.pending;
    this.pending = { blocks: [] };
    const shown = displayName(block, posix, pending);
    const what = TYPE_NAMES[type];
    if (type !== '0' && type !== '\0' && type !== '5' && type !== '2') {
      const label = what ?? `a member of unknown type ${q(type)}`;
      const target = type === '1' ? ` to ${q(linkTarget(block, pending))}` : '';
      throw new TarRefusedError(`${q(shown)} is ${label}${target}: only regular files, directories and symlinks are copied back`, shown, 'type');
    }
    const paxSize = pending.pax?.get('size');
    let size = headerSize;
    if (paxSize !== undefined) {
      if (!/^\d+$/.test(paxSize) || !Number.isSafeInteger(Number(paxSize))) throw new TarRefusedError(`${q(shown)} has a bad pax size ${q(paxSize)}`, shown, 'format');
      size = Number(paxSize);
      if (size !== headerSize) throw new TarRefusedError(`${q(shown)} has two sizes (${headerSize} in its header, ${size} in its pax header)`, shown, 'format');
    }
    const name = checkName(shown);
    if (type === '5' || type === '2') {
      if (size !== 0) throw new TarRefusedError(`${q(shown)} is a ${type === '5' ? 'directory' : 'symlink'} with ${size} bytes of data`, shown, 'format');
    } else if (shown.endsWith('/') || name === '') {
      throw new TarRefusedError(`${q(shown)} is a regular file named like a directory`, shown, 'name');
    }
    if (type === '2') {
      const target = linkTarget(block, pending);
      if (target === '' || target.includes('\0')) throw new TarRefusedError(`${q(shown)} is a symlink without a target`, shown, 'format');
      if (name === '') throw new TarRefusedError('the archive makes the root of the working copy a symlink', shown, 'name');
    }
    if (this.names.has(name)) throw new TarRefusedError(`${q(shown)} appears twice in the archive`, shown, 'name');
    const parts = name === '' ? [] : name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      if (this.symlinks.has(parent)) throw new TarRefusedError(`${q(shown)} lies under the symlink ${q(parent)}`, shown, 'name');
    }
    if (this.memberCount + 1 > this.limits.maxMembers) {
      throw new TarRefusedError(`the archive has more than ${this.limits.maxMembers} files and directories (the copy-back limit)`, shown, 'members');
    }
    if (this.offset + padded(size) > this.limits.maxBytes) {
      throw new TarRefusedError(
        `${q(shown)} is ${size} bytes: the archive would be larger than the copy-back limit of ${this.limits.maxBytes} bytes`,
        shown,
        'bytes',
      );
    }
    if (this.checkMember) {
      const mode = parseNumber(block.subarray(100, 108), 'mode', this.offset - TAR_BLOCK);
      const kind = type === '5' ? 'directory' : type === '2' ? 'symlink' : 'file';
      const refusal = this.checkMember({ name: utf8(name), type: kind, mode });
      if (refusal !== null) throw new TarRefusedError(`${q(shown)} ${refusal}`, shown, 'name');
    }
    this.memberCount++;
    this.names.add(name);
    if (type === '2') this.symlinks.add(name);
    for (const b of pending.blocks) this.push(b);
    this.push(block);
    this.need = padded(size);
    this.phase = this.need > 0 ? 'data' : 'header';
    if (this.need === 0) this.need = TAR_BLOCK;
  }

  private extended(data: Buffer): void {
    // `data` is the payload and its padding; the payload is `extSize` bytes.
    const payload = data.subarray(0, this.extSize);
    this.pending.blocks.push(data);
    if (this.extKind === 'x') {
      this.pending.pax = parsePax(payload);
    } else {
      const nul = payload.indexOf(0);
      const text = (nul === -1 ? payload : payload.subarray(0, nul)).toString('latin1');
      if (text.length === 0 || text.length > MAX_NAME_BYTES) throw new TarRefusedError('a GNU long name is empty or too long', null, 'format');
      if (this.extKind === 'L') this.pending.longName = text;
      else this.pending.longLink = text;
    }
    this.phase = 'header';
    this.need = TAR_BLOCK;
  }
}

// Names are handled as latin1 strings, one character per byte, so checks and comparisons see the exact bytes;
// they are decoded as UTF-8 only to be shown.
function utf8(bytes: string): string {
  return Buffer.from(bytes, 'latin1').toString('utf8');
}

/** A name quoted for a message. */
function q(bytes: string): string {
  return JSON.stringify(utf8(bytes));
}

/** Bytes a member of `size` bytes takes in the archive (its data padded to whole blocks). */
function padded(size: number): number {
  return Math.ceil(size / TAR_BLOCK) * TAR_BLOCK;
}

function cstring(field: Buffer): string {
  const nul = field.indexOf(0);
  return (nul === -1 ? field : field.subarray(0, nul)).toString('latin1');
}

/** The member's name as GNU tar reads it: pax `path`, else a GNU long name, else ustar prefix and name. */
function displayName(block: Buffer, posix: boolean, pending: Pending): string {
  const pax = pending.pax?.get('path');
  if (pax !== undefined && pending.longName !== undefined && pax !== pending.longName) {
    throw new TarRefusedError(`one member has two long names (${q(pax)} and ${q(pending.longName)})`, pax, 'format');
  }
  if (pax !== undefined) return pax;
  if (pending.longName !== undefined) return pending.longName;
  const name = cstring(block.subarray(0, 100));
  // Only POSIX ustar headers have a prefix; in GNU headers those bytes hold other fields.
  const prefix = posix ? cstring(block.subarray(345, 500)) : '';
  return prefix ? `${prefix}/${name}` : name;
}

function linkTarget(block: Buffer, pending: Pending): string {
  return pending.pax?.get('linkpath') ?? pending.longLink ?? cstring(block.subarray(157, 257));
}

/** The member's path with `./` and empty components removed ('' for the root); refuses absolute names and `..`. */
function checkName(shown: string): string {
  if (shown === '') throw new TarRefusedError('a member has an empty name', shown, 'name');
  if (shown.includes('\0')) throw new TarRefusedError(`${q(shown)} has a NUL in its name`, shown, 'name');
  if (shown.startsWith('/')) throw new TarRefusedError(`${q(shown)} is an absolute name`, shown, 'name');
  const parts = shown.split('/');
  if (parts.includes('..')) throw new TarRefusedError(`${q(shown)} has a ".." component`, shown, 'name');
  return parts.filter((p) => p !== '' && p !== '.').join('/');
}

function checkChecksum(block: Buffer, at: number): void {
  const stored = parseNumber(block.subarray(148, 156), 'checksum', at);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < TAR_BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  // GNU tar accepts either sum (some old writers used signed chars).
  if (stored !== unsigned && stored !== signed) throw new TarRefusedError(`bad header checksum at byte ${at}`, null, 'format');
}

/** A numeric header field: octal (space/NUL padded) or GNU base-256; negative or malformed values are refused. */
function parseNumber(field: Buffer, what: string, at: number): number {
  if (field[0] === 0x80) {
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    if (!Number.isSafeInteger(n)) throw new TarRefusedError(`the ${what} field at byte ${at} is too large`, null, 'format');
    return n;
  }
  const text = field.toString('latin1').replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (!/^[0-7]+$/.test(text)) throw new TarRefusedError(`the ${what} field at byte ${at} is not a number`, null, 'format');
  const n = parseInt(text, 8);
  if (!Number.isSafeInteger(n)) throw new TarRefusedError(`the ${what} field at byte ${at} is too large`, null, 'format');
  return n;
}

/** Records `"<len> <key>=<value>\n"` of a pax extended header; unknown keys (GNU.sparse.*, SCHILY.*, …) are refused. */
function parsePax(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const lenText = space === -1 ? '' : data.subarray(at, space).toString('latin1');
    const len = /^[1-9][0-9]{0,8}$/.test(lenText) ? Number(lenText) : NaN;
    if (!Number.isInteger(len) || at + len > data.length || data[at + len - 1] !== 0x0a || space >= at + len - 1) {
      throw new TarRefusedError('a pax extended header is malformed', null, 'format');
    }
    const record = data.subarray(space + 1, at + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw new TarRefusedError('a pax extended header is malformed', null, 'format');
    const key = record.subarray(0, eq).toString('utf8');
    const value = record.subarray(eq + 1).toString('latin1');
    if (!PAX_KEYS.has(key)) throw new TarRefusedError(`a pax extended header sets ${q(key)}, which is not accepted`, out.get('path') ?? null, key.startsWith('GNU.sparse') ? 'type' : 'format');
    if (value.includes('\0')) throw new TarRefusedError(`the pax ${key} holds a NUL`, null, 'format');
    out.set(key, value);
    at += len;
  }
  return out;
}

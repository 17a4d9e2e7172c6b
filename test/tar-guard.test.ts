/**
 * The tar stream check between a pod's copy-back and the host's `tar -x`, on archives made by the
 * host's GNU tar (and a few headers edited by hand where no tar writes such a thing).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TarGuard, TarRefusedError, TAR_BLOCK, type TarLimits } from '../activities/sandbox/tar-guard';
import { tempDir } from './support/git-fixture';

const LIMITS: TarLimits = { maxBytes: 64 << 20, maxMembers: 1_000 };
let root: string;
let n = 0;

/** A fresh directory holding `files` (content strings), for one archive. */
function tree(files: Record<string, string> = {}): string {
  const dir = path.join(root, `t${++n}`);
  fs.mkdirSync(dir);
  for (const [rel, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), content);
  }
  return dir;
}

function tar(args: string[]): Buffer {
  return execFileSync('tar', args, { maxBuffer: 256 << 20 });
}

/** Feed `archive` through a guard in odd-sized chunks; what came out and how it ended. */
async function guard(archive: Buffer, limits = LIMITS): Promise<{ out: Buffer; err: TarRefusedError | null; g: TarGuard }> {
  const g = new TarGuard(limits);
  const chunks: Buffer[] = [];
  g.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<TarRefusedError | null>((resolve) => {
    g.once('error', (e) => resolve(e as TarRefusedError));
    // 'finish', not 'end': the readable side ends at the end marker, while bytes after it are still counted.
    g.once('finish', () => resolve(null));
  });
  for (let at = 0; at < archive.length && !g.destroyed; at += 777) g.write(archive.subarray(at, at + 777));
  if (!g.destroyed) g.end();
  const err = await done;
  return { out: Buffer.concat(chunks), err, g };
}

async function refused(archive: Buffer, limits = LIMITS): Promise<TarRefusedError> {
  const { err } = await guard(archive, limits);
  assert.ok(err instanceof TarRefusedError, 'the archive was refused');
  return err;
}

/** Rewrite fields of the header at `offset` and fix its checksum. */
function edit(archive: Buffer, offset: number, fields: { type?: string; size?: number; name?: string }): Buffer {
  const out = Buffer.from(archive);
  const h = out.subarray(offset, offset + TAR_BLOCK);
  if (fields.type !== undefined) h[156] = fields.type.charCodeAt(0);
  if (fields.size !== undefined) h.write(fields.size.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  if (fields.name !== undefined) {
    h.fill(0, 0, 100);
    h.write(fields.name, 0, 'utf8');
  }
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return out;
}

/** Offset of the header whose name field is `name`. */
function headerOf(archive: Buffer, name: string): number {
  for (let at = 0; at + TAR_BLOCK <= archive.length; at += TAR_BLOCK) {
    const h = archive.subarray(at, at + TAR_BLOCK);
    if (h.subarray(257, 262).toString('latin1') === 'ustar' && h.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '') === name) return at;
  }
  throw new Error(`no header named ${name}`);
}

describe('tar guard for archives coming back from a pod', () => {
  before(() => {
    root = tempDir('tar-guard');
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('passes an ordinary tree through byte for byte, in GNU and POSIX formats, long names and symlinks included', async () => {
    const long = `${'d'.repeat(60)}/${'f'.repeat(120)}.txt`;
    const dir = tree({ 'README.md': '# hi\n', 'src/a.ts': 'export {};\n', [long]: 'long\n', 'empty': '', 'naïve-日本.txt': 'utf8\n' });
    fs.symlinkSync('src/a.ts', path.join(dir, 'inside'));
    fs.symlinkSync('/etc/passwd', path.join(dir, 'outside'));
    fs.symlinkSync('x'.repeat(150), path.join(dir, 'long-target'));
    for (const format of ['gnu', 'posix']) {
      const archive = tar(['-c', '-f', '-', `--format=${format}`, '-C', dir, '.']);
      const { out, err, g } = await guard(archive);
      assert.equal(err, null, `${format}: ${err?.message}`);
      assert.equal(g.members, 11);
      // Everything up to the end marker, then exactly two zero blocks.
      assert.ok(archive.subarray(0, out.length).equals(out), format);
      assert.ok(out.subarray(-2 * TAR_BLOCK).every((b) => b === 0));
      const dest = tree();
      execFileSync('tar', ['-x', '-f', '-', '-C', dest], { input: out });
      assert.equal(fs.readFileSync(path.join(dest, long), 'utf8'), 'long\n');
      assert.equal(fs.readlinkSync(path.join(dest, 'outside')), '/etc/passwd');
    }
  });

  it("asks the caller's check about each member, normalized, and refuses what it refuses before its header passes", async () => {
    const dir = tree({ 'ok.txt': 'ok\n', 'sub/bad.txt': 'bad\n' });
    fs.chmodSync(path.join(dir, 'ok.txt'), 0o750);
    fs.chmodSync(path.join(dir, 'sub'), 0o755);
    fs.chmodSync(path.join(dir, 'sub/bad.txt'), 0o644);
    const archive = tar(['-c', '-f', '-', '--format=gnu', '-C', dir, './ok.txt', 'sub']);
    const asked: string[] = [];
    const g = new TarGuard(LIMITS, (m) => {
      asked.push(`${m.type} ${m.name} ${m.mode.toString(8)}`);
      return m.name === 'sub/bad.txt' ? 'is not wanted here' : null;
    });
    const chunks: Buffer[] = [];
    g.on('data', (c: Buffer) => chunks.push(c));
    const err = await new Promise<unknown>((resolve) => {
      g.once('error', resolve);
      g.once('finish', () => resolve(null));
      g.end(archive);
    });
    assert.ok(err instanceof TarRefusedError);
    assert.equal(err.reason, 'name');
    assert.match(err.message, /"sub\/bad\.txt" is not wanted here/);
    assert.deepEqual(asked, ['file ok.txt 750', 'directory sub 755', 'file sub/bad.txt 644']);
    assert.ok(Buffer.concat(chunks).length <= headerOf(archive, 'sub/bad.txt'), 'nothing of the refused member was passed on');
  });

  it('refuses a FIFO, naming it, before its header reaches the host tar', async () => {
    const dir = tree({ 'a.txt': 'a\n' });
    execFileSync('mkfifo', [path.join(dir, 'pipe')]);
    const archive = tar(['-c', '-f', '-', '-C', dir, 'a.txt', 'pipe']);
    const { out, err } = await guard(archive);
    assert.ok(err instanceof TarRefusedError);
    assert.equal(err.reason, 'type');
    assert.equal(err.member, 'pipe');
    assert.match(err.message, /"pipe" is a FIFO: only regular files, directories and symlinks/);
    assert.ok(out.length <= headerOf(archive, 'pipe'), 'nothing of the FIFO was passed on');
    // Names are shown as the UTF-8 they are.
    execFileSync('mkfifo', [path.join(dir, 'tuyau-é')]);
    const named = await refused(tar(['-c', '-f', '-', '-C', dir, 'tuyau-é']));
    assert.equal(named.member, 'tuyau-é');
    assert.match(named.message, /^"tuyau-é" is a FIFO/);
  });

  it('refuses character and block devices', async () => {
    const dir = tree();
    execFileSync('mknod', [path.join(dir, 'null'), 'c', '1', '3']);
    execFileSync('mknod', [path.join(dir, 'disk'), 'b', '7', '0']);
    assert.match((await refused(tar(['-c', '-f', '-', '-C', dir, 'null']))).message, /"null" is a character device/);
    assert.match((await refused(tar(['-c', '-f', '-', '-C', dir, 'disk']))).message, /"disk" is a block device/);
  });

  it('refuses a hard link, naming its target', async () => {
    const dir = tree({ 'a.txt': 'a\n' });
    fs.linkSync(path.join(dir, 'a.txt'), path.join(dir, 'b.txt'));
    const err = await refused(tar(['-c', '-f', '-', '-C', dir, 'a.txt', 'b.txt']));
    assert.match(err.message, /"b.txt" is a hard link to "a.txt"/);
  });

  it('refuses ".." and absolute names', async () => {
    const dir = tree({ 'x': 'outside\n', 'sub/y': 'y\n' });
    const dotdot = await refused(tar(['-c', '-f', '-', '-P', '-C', path.join(dir, 'sub'), '../x']));
    assert.equal(dotdot.reason, 'name');
    assert.match(dotdot.message, /"\.\.\/x" has a "\.\." component/);
    const absolute = await refused(tar(['-c', '-f', '-', '-P', path.join(dir, 'x')]));
    assert.match(absolute.message, /is an absolute name/);
    const nested = await refused(tar(['-c', '-f', '-', '-P', '-C', path.join(dir, 'sub'), 'y', '../sub/y']));
    assert.match(nested.message, /"\.\.\/sub\/y"/);
  });

  it('refuses a 4 GiB sparse file at its header, having read almost nothing of it', async () => {
    const dir = tree();
    execFileSync('truncate', ['-s', '4G', path.join(dir, 'big')]);
    const child = spawn('tar', ['-c', '-f', '-', '-C', dir, 'big'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const g = new TarGuard({ maxBytes: 2 * 2 ** 30, maxMembers: 1_000 });
    g.resume();
    child.stdout.pipe(g);
    const err = await new Promise<Error>((resolve) => g.once('error', resolve));
    child.kill('SIGKILL');
    assert.ok(err instanceof TarRefusedError);
    assert.equal(err.reason, 'bytes');
    assert.match(err.message, /"big" is 4294967296 bytes: the archive would be larger than the copy-back limit of 2147483648 bytes/);
    assert.ok(g.bytes < 4 << 20, `read ${g.bytes} bytes`);
    // Written as a sparse member (GNU `S`, or pax GNU.sparse keys) it is refused as well.
    const small = tree();
    execFileSync('truncate', ['-s', '1M', path.join(small, 'holes')]);
    for (const format of ['gnu', 'posix']) {
      const e = await refused(tar(['-c', '-f', '-', '-S', `--format=${format}`, '-C', small, 'holes']));
      assert.equal(e.reason, 'type', `${format}: ${e.message}`);
    }
  });

  it('caps the bytes it lets through, measured on the stream, and the number of members', async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 20; i++) files[`f${i}`] = 'x'.repeat(100_000);
    const archive = tar(['-c', '-f', '-', '-C', tree(files), '.']);
    const bytes = await refused(archive, { maxBytes: 1 << 20, maxMembers: 1_000 });
    assert.equal(bytes.reason, 'bytes');
    assert.match(bytes.message, /copy-back limit of 1048576 bytes/);
    const members = await refused(archive, { maxBytes: 64 << 20, maxMembers: 10 });
    assert.equal(members.reason, 'members');
    assert.match(members.message, /more than 10 files and directories/);
    // Whatever follows the end marker is not passed on, and still counts.
    const small = tar(['-c', '-f', '-', '-C', tree({ a: 'a' }), 'a']);
    const { out, err } = await guard(Buffer.concat([small, Buffer.alloc(4 * TAR_BLOCK, 0x41)]), { maxBytes: 1 << 20, maxMembers: 10 });
    assert.equal(err, null);
    assert.equal(out.length, 4 * TAR_BLOCK, 'header, data and two zero blocks');
    const flood = await refused(Buffer.concat([small, Buffer.alloc(2 << 20, 0x41)]), { maxBytes: 1 << 20, maxMembers: 10 });
    assert.equal(flood.reason, 'bytes');
  });

  it('refuses framing GNU tar could read differently: a directory or symlink with data, a regular file with a trailing slash', async () => {
    const dir = tree({ 'd/x': 'x\n', 'f': 'f\n' });
    fs.symlinkSync('f', path.join(dir, 'l'));
    const archive = tar(['-c', '-f', '-', '-C', dir, 'd', 'f', 'l']);
    const withData = await refused(edit(archive, headerOf(archive, 'd/'), { size: 512 }));
    assert.match(withData.message, /"d\/" is a directory with 512 bytes of data/);
    const link = await refused(edit(archive, headerOf(archive, 'l'), { size: 512 }));
    assert.match(link.message, /"l" is a symlink with 512 bytes of data/);
    const slash = await refused(edit(archive, headerOf(archive, 'f'), { name: 'f/' }));
    assert.match(slash.message, /"f\/" is a regular file named like a directory/);
    const unknown = await refused(edit(archive, headerOf(archive, 'f'), { type: 'Z' }));
    assert.match(unknown.message, /"f" is a member of unknown type "Z"/);
  });

  it('refuses a member under an earlier symlink, a name given twice, a bad checksum, a global header and a cut archive', async () => {
    const a = tree();
    fs.symlinkSync('/etc', path.join(a, 'l'));
    fs.writeFileSync(path.join(a, 'f'), 'one\n');
    const b = tree({ 'l/passwd': 'owned\n', f: 'two\n' });
    const through = await refused(tar(['-c', '-f', '-', '-C', a, 'l', '-C', b, 'l/passwd']));
    assert.match(through.message, /"l\/passwd" lies under the symlink "l"/);
    const twice = await refused(tar(['-c', '-f', '-', '-C', a, 'f', '-C', b, 'f']));
    assert.match(twice.message, /"f" appears twice/);

    const ok = tar(['-c', '-f', '-', '-C', b, 'f']);
    const bad = Buffer.from(ok);
    bad[0] = 'g'.charCodeAt(0);
    assert.match((await refused(bad)).message, /bad header checksum at byte 0/);
    const global = tar(['-c', '-f', '-', '--format=posix', '--pax-option=comment=hello', '-C', b, 'f']);
    assert.match((await refused(global)).message, /is a pax global header/);
    const cut = await refused(ok.subarray(0, TAR_BLOCK + 100));
    assert.equal(cut.reason, 'format');
    assert.match(cut.message, /cut short/);
    const junk = await refused(Buffer.alloc(TAR_BLOCK, 0x41));
    assert.equal(junk.reason, 'format');
  });
});

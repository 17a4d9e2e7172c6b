/**
 * The shell parse behind approval commands: words as the shell resolves them, and what a command reads on stdin.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeAnsiC, simpleCommands } from '../domain/shell';

const words = (src: string): string[][] => simpleCommands(src)!.map((c) => c.words.map((w) => w.text));

describe('simple commands of a shell parse', () => {
  it('resolves quotes, escapes and concatenation', () => {
    assert.deepEqual(words(`r''m -r"f" \\/ "a\\$b\\c" $'\\x41\\t'z`)[0], ['rm', '-rf', '/', 'a$b\\c', 'A\tz']);
    assert.deepEqual(words('a\\\nb c')[0], ['ab', 'c'], 'a line continuation joins the word');
  });

  it('marks computed words and keeps their source text', () => {
    const [c] = simpleCommands('$x "a$(b)" c ${d:-e} *.ts ~/bin/f {g,h}')!.filter((c) => c.words.length > 1);
    assert.deepEqual(
      c!.words.map((w) => [w.text, w.dynamic]),
      [['$x', true], ['a$(b)', true], ['c', false], ['${d:-e}', true], ['*.ts', true], ['~/bin/f', false], ['{g,h}', true]],
    );
  });

  it('finds commands wherever they are nested', () => {
    const names = words('a | b && (c; { d; }) || e $(f `g`) <(h); if i; then j; fi; k() { l; }').map((w) => w[0]);
    assert.deepEqual([...new Set(names)].sort(), ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'l']);
  });

  it('reads both as bash and as POSIX sh', () => {
    assert.deepEqual(words('((rm -rf /))'), [['rm', '-rf', '/']], 'two subshells to dash, arithmetic to bash');
  });

  it('says what a command reads on standard input', () => {
    const stdin = (src: string) => simpleCommands(src)!.find((c) => c.words[0]!.text === 'sh')!.stdin;
    assert.deepEqual(stdin("sh <<'E'\necho $x\nE"), { kind: 'text', text: 'echo $x\n' });
    assert.deepEqual(stdin('sh <<-E\n\techo hi\n\tE'), { kind: 'text', text: 'echo hi\n' });
    assert.deepEqual(stdin("sh <<< 'echo hi'"), { kind: 'text', text: 'echo hi\n' });
    assert.deepEqual(stdin('sh <<E\necho $x\nE'), { kind: 'unknown' }, 'a here-document that expands');
    assert.deepEqual(stdin('echo x | sh'), { kind: 'unknown' });
    assert.deepEqual(stdin("sh < script <<< 'echo hi'"), { kind: 'text', text: 'echo hi\n' }, 'the last redirection wins');
    assert.deepEqual(stdin("sh <<< 'echo hi' < script"), { kind: 'unknown' });
    assert.deepEqual(stdin("sh 3<<< 'echo hi'"), { kind: 'unknown' }, 'another descriptor is not stdin');
  });

  it('returns null for what neither reading can parse', () => {
    assert.equal(simpleCommands('echo ok; ('), null);
    assert.equal(simpleCommands("echo 'open"), null);
  });

  it('decodes ANSI-C strings as bash does', () => {
    assert.equal(decodeAnsiC('\\x72\\155\\u00e9\\U0001F600\\cA\\e\\q'), 'rmé\u{1F600}\x01\x1b\\q');
  });
});

/**
 * The pure repository rules: how a `repo` string is read, normalized and matched.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkLocation, globToRegExp, parseRepo, realPathOf, RepoRefusedError, type RepoRule, type RepoRules } from '../domain/repo-policy';

const rules: RepoRules = { allow: ['https://github.com/acme/**', 'ssh://github.com/acme/*.git'], localRoots: ['/srv/repos'], forbidden: ['/srv/repos/data'] };

function refusedBy(rule: RepoRule, fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => err instanceof RepoRefusedError && err.rule === rule);
}

describe('parseRepo', () => {
  it('keeps an ssh login user for git but matches the URL without it', () => {
    assert.deepEqual(parseRepo('ssh://git@GitHub.com/acme/app.git'), {
      kind: 'remote',
      scheme: 'ssh',
      url: 'ssh://git@github.com/acme/app.git',
      normalized: 'ssh://github.com/acme/app.git',
    });
    assert.deepEqual(parseRepo('git@github.com:acme/app.git'), { kind: 'remote', scheme: 'ssh', url: 'git@github.com:acme/app.git', normalized: 'ssh://github.com/acme/app.git' });
  });

  it('reads absolute paths and file:// URLs as local repositories, lexically cleaned', () => {
    assert.deepEqual(parseRepo('/srv/repos//a/./b/../app.git/'), { kind: 'local', path: '/srv/repos/a/app.git' });
    assert.deepEqual(parseRepo('file:///srv/repos/my%20app.git'), { kind: 'local', path: '/srv/repos/my app.git' });
  });

  it('refuses credentials, helper transports, control characters and relative paths', () => {
    refusedBy('credentials', () => parseRepo('https://token@github.com/acme/app.git'));
    refusedBy('credentials', () => parseRepo('git://user:pw@github.com/acme/app.git'));
    refusedBy('credentials', () => parseRepo('git:pw@github.com:acme/app.git'));
    refusedBy('transport', () => parseRepo('ext::sh -c id'));
    refusedBy('transport', () => parseRepo('fd::0,1'));
    refusedBy('transport', () => parseRepo('ssh+git://github.com/acme/app.git'));
    refusedBy('syntax', () => parseRepo('https://github.com/acme/app.git\nx'));
    refusedBy('syntax', () => parseRepo('./app.git'));
    refusedBy('syntax', () => parseRepo('file://otherhost/srv/app.git'));
    refusedBy('syntax', () => parseRepo('https://github.com/acme/app.git?x=1'));
    refusedBy('syntax', () => parseRepo('ssh://-oProxyCommand=touch%20x/acme/app.git'));
    refusedBy('syntax', () => parseRepo('ssh://-oProxyCommand=x@github.com/acme/app.git'));
    refusedBy('syntax', () => parseRepo('git@-oProxyCommand=x:acme/app.git'));
    refusedBy('syntax', () => parseRepo('ssh://%2DoProxyCommand=x@github.com/acme/app.git'));
    assert.equal(parseRepo('ssh://%zz@github.com/acme/app.git').kind, 'remote', 'a malformed escape is not a crash');
  });
});

describe('checkLocation', () => {
  it('matches REPO_ALLOW globs: * within a segment, ** across', () => {
    checkLocation(parseRepo('https://github.com/acme/team/app.git'), rules);
    checkLocation(parseRepo('git@github.com:acme/app.git'), rules);
    refusedBy('REPO_ALLOW', () => checkLocation(parseRepo('ssh://github.com/acme/team/app.git'), rules));
    refusedBy('REPO_ALLOW', () => checkLocation(parseRepo('https://github.com.evil.example/acme/app.git'), rules));
    refusedBy('REPO_ALLOW', () => checkLocation(parseRepo('http://github.com/acme/app.git'), rules));
    assert.equal(globToRegExp('https://h/a?c').test('https://h/a/c'), false);
  });

  it('allows local repositories under a root, never in or around DATA_DIR', () => {
    checkLocation({ kind: 'local', path: '/srv/repos/app.git' }, rules);
    refusedBy('REPO_LOCAL_ROOTS', () => checkLocation({ kind: 'local', path: '/srv/repos-other/app.git' }, rules));
    refusedBy('DATA_DIR', () => checkLocation({ kind: 'local', path: '/srv/repos/data/workspaces/t-1' }, rules));
    refusedBy('DATA_DIR', () => checkLocation({ kind: 'local', path: '/srv/repos' }, rules));
  });
});

describe('realPathOf', () => {
  it('resolves the part that exists and appends the rest', async () => {
    const links: Record<string, string> = { '/tmp/link': '/srv/repos/data' };
    const realpath = async (p: string): Promise<string> => {
      if (p in links) return links[p]!;
      if (p === '/' || p === '/tmp') return p;
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    };
    assert.equal(await realPathOf('/tmp/link/workspaces/x', realpath), '/srv/repos/data/workspaces/x');
    assert.equal(await realPathOf('/tmp/missing/x', realpath), '/tmp/missing/x');
  });
});

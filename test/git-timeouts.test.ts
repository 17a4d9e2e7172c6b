/**
 * Host git calls end: a remote that never answers is given up on at the call's timeout, and a cancelled
 * call is killed with everything it started (git's http helper included), leaving nothing behind.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { clone, GitAbortedError, GitError, remoteBranchTip } from '../activities/git/workspace';
import type { RepoRules } from '../domain/repo-policy';
import { tempDir } from './support/git-fixture';

/** A loopback server that accepts every request and never answers it; reports each request and each closed connection. */
function startSilentServer(): Promise<{ url: string; requests: EventTarget; closed: EventTarget; stop(): Promise<void> }> {
  const requests = new EventTarget();
  const closed = new EventTarget();
  const sockets = new Set<Socket>();
  const server = http.createServer(() => requests.dispatchEvent(new Event('request')));
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => {
      sockets.delete(socket);
      closed.dispatchEvent(new Event('close'));
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}/silent.git`,
        requests,
        closed,
        stop: () =>
          new Promise((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

const once = (target: EventTarget, type: string): Promise<void> => new Promise((resolve) => target.addEventListener(type, () => resolve(), { once: true }));

let silent: Awaited<ReturnType<typeof startSilentServer>>;
const rules: RepoRules = { allow: ['http://127.0.0.1:*/**'], localRoots: [], forbidden: [] };

before(async () => {
  silent = await startSilentServer();
});

after(async () => {
  await silent.stop();
});

describe('a remote that never answers', () => {
  it('fails ls-remote with a retryable GitError at its timeout and closes the connection', async () => {
    const closed = once(silent.closed, 'close');
    await assert.rejects(remoteBranchTip(silent.url, 'main', { rules, timeoutMs: 500 }), (err: unknown) => {
      assert.ok(err instanceof GitError, String(err));
      assert.equal(err.reason, 'failed');
      assert.match(err.message, /timed out after 500 ms/);
      return true;
    });
    await closed;
  });

  it('kills a clone when its signal aborts, the http helper with it, and leaves no half clone', async () => {
    const dest = path.join(tempDir('git-abort'), 'work');
    const ac = new AbortController();
    const requested = once(silent.requests, 'request');
    const closed = once(silent.closed, 'close');
    const cloning = clone(silent.url, 'main', dest, { rules, signal: ac.signal });
    await requested;
    ac.abort();
    await assert.rejects(cloning, (err: unknown) => err instanceof GitAbortedError && err.name === 'AbortError');
    // The connection belongs to git-remote-http, a child of git: it closes only if the whole group was killed.
    await closed;
    assert.deepEqual(fs.readdirSync(path.dirname(dest)).filter((n) => !n.startsWith('.git-dirs')), []);
  });

  it('refuses to start a call whose signal has already aborted', async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(remoteBranchTip(silent.url, 'main', { rules, signal: ac.signal }), GitAbortedError);
  });
});

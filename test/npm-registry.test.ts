/**
 * The local npm registry the setup-phase tests install from: npm publishes to it and installs from it,
 * its metadata follows the name a request used, and it never asks anyone else for a package.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tempDir } from './support/git-fixture';
import { npm, publishPackage, startNpmRegistry, type NpmRegistry } from './support/npm-registry';

/** GET `pkg`'s metadata from the registry with the Host header a request through the egress proxy carries. */
function metadataAs(registry: NpmRegistry, host: string, pkg: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: registry.port, path: `/${pkg}`, headers: { host } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) }));
    });
    req.on('error', reject);
  });
}

/**
 * A minimal forward proxy for plain HTTP that sends every request for `name` to 127.0.0.1 and refuses the rest,
 * as the egress proxy does for a name the operator maps to loopback; `seen` records the hosts asked for.
 */
async function mappingProxy(name: string): Promise<{ url: string; seen: string[]; close(): Promise<void> }> {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    const target = new URL(req.url ?? '/');
    seen.push(target.host);
    if (target.hostname !== name) {
      res.writeHead(403).end();
      return;
    }
    const upstream = http.request({ host: '127.0.0.1', port: target.port, path: target.pathname + target.search, method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => res.writeHead(502).end());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('local npm registry', () => {
  let registry: NpmRegistry;
  let root: string;

  before(async () => {
    root = tempDir('npm-registry-test');
    const t0 = Date.now();
    registry = await startNpmRegistry();
    // Shown in the test log: start-up time is part of the suite's budget.
    console.log(`registry ready in ${Date.now() - t0} ms at ${registry.url}`);
    await publishPackage(registry, 'tiny-answer', '1.0.0', { 'index.js': 'module.exports = 42;\n' });
  });

  after(async () => {
    await registry?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('installs a published package with npm', async () => {
    const project = path.join(root, 'project');
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
    await npm(['install', 'tiny-answer', '--registry', registry.url, '--cache', path.join(root, 'cache'), '--userconfig', '/dev/null'], project);
    assert.equal(fs.readFileSync(path.join(project, 'node_modules/tiny-answer/index.js'), 'utf8'), 'module.exports = 42;\n');
    const lock = JSON.parse(fs.readFileSync(path.join(project, 'package-lock.json'), 'utf8'));
    assert.equal(lock.packages['node_modules/tiny-answer'].resolved, `${registry.url}tiny-answer/-/tiny-answer-1.0.0.tgz`);
  });

  it('names tarballs by the host the request used, so a proxied name leads back through the proxy', async () => {
    const host = `registry.test:${registry.port}`;
    const { status, body } = await metadataAs(registry, host, 'tiny-answer');
    assert.equal(status, 200);
    assert.equal(body.versions['1.0.0'].dist.tarball, `http://${host}/tiny-answer/-/tiny-answer-1.0.0.tgz`);
  });

  it('installs through a forward proxy under a made-up name, tarball included', async () => {
    const proxy = await mappingProxy('registry.test');
    try {
      const project = path.join(root, 'proxied');
      fs.mkdirSync(project);
      fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
      const registryUrl = `http://registry.test:${registry.port}/`;
      await npm(['install', 'tiny-answer', '--registry', registryUrl, '--proxy', proxy.url, '--cache', path.join(root, 'cache-proxied'), '--userconfig', '/dev/null'], project);
      assert.equal(fs.readFileSync(path.join(project, 'node_modules/tiny-answer/index.js'), 'utf8'), 'module.exports = 42;\n');
      const lock = JSON.parse(fs.readFileSync(path.join(project, 'package-lock.json'), 'utf8'));
      assert.equal(lock.packages['node_modules/tiny-answer'].resolved, `${registryUrl}tiny-answer/-/tiny-answer-1.0.0.tgz`);
      assert.deepEqual([...new Set(proxy.seen)], [`registry.test:${registry.port}`], 'every request went to the made-up name, through the proxy');
    } finally {
      await proxy.close();
    }
  });

  it('has no uplinks: a package it does not hold is not found', async () => {
    const { status } = await metadataAs(registry, `127.0.0.1:${registry.port}`, 'left-pad');
    assert.equal(status, 404);
  });
});

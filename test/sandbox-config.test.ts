/**
 * Which sandbox driver the configuration gets, and what it says when commands are not isolated.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig, readEgressProxySecret } from '../workers/config';
import type { Logger } from '../workers/log';
import { createSandboxDriver, resolveRunsc, SandboxUnavailableError } from '../workers/sandbox';
import { tempDir } from './support/git-fixture';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

describe('sandbox driver selection', () => {
  const root = tempDir('sandbox-config-');
  // An environment in which no runsc can be found: empty cache, no PATH entry holding one.
  const bare = { PATH: path.join(root, 'empty-bin'), AGENT_INBOX_CACHE: path.join(root, 'cache'), DATA_DIR: path.join(root, 'data') };
  fs.mkdirSync(bare.PATH, { recursive: true });

  it('falls back to the process driver only with a warning when runsc is missing', async () => {
    const { driver, info } = await createSandboxDriver(loadConfig({ ...bare, SANDBOX_DRIVER: 'auto' }), quiet, bare);
    assert.equal(driver.name, 'process');
    assert.equal(info.isolation, 'none');
    assert.match(info.warning ?? '', /^isolation: none — runsc was not found/);
  });

  it('refuses to start when gvisor is asked for and runsc is missing', async () => {
    await assert.rejects(createSandboxDriver(loadConfig({ ...bare, SANDBOX_DRIVER: 'gvisor' }), quiet, bare), SandboxUnavailableError);
    await assert.rejects(resolveRunsc({ ...bare, RUNSC: path.join(root, 'nope') }), /does not exist/);
  });

  it('picks gVisor by default where runsc is installed and the backend is root', async () => {
    const { driver, info } = await createSandboxDriver(loadConfig({ DATA_DIR: bare.DATA_DIR }), quiet);
    if (process.getuid?.() !== 0) {
      assert.equal(driver.name, 'process');
      assert.match(info.warning ?? '', /needs root/);
      return;
    }
    assert.equal(driver.name, 'gvisor', 'runsc is installed by `npm run setup`');
    assert.equal(info.warning, undefined);
    assert.match(info.detail ?? '', /runsc/);
  });

  it('never falls back to localhost for Kubernetes: no KUBECONFIG and no cluster is an error', async () => {
    await assert.rejects(createSandboxDriver(loadConfig({ ...bare, SANDBOX_DRIVER: 'k8s' }), quiet, bare), /needs KUBECONFIG/);
  });

  it('names the variable of a malformed egress proxy, and wants its secret file and report port with it', () => {
    const secretFile = path.join(root, 'egress-secret');
    fs.writeFileSync(secretFile, `${'k'.repeat(64)}\n`, { mode: 0o600 });
    const withProxy = { DATA_DIR: bare.DATA_DIR, EGRESS_PROXY_SECRET_FILE: secretFile, K8S_EGRESS_PROXY_REPORT_URL: 'http://proxy.net-system:3129' };
    assert.throws(() => loadConfig({ ...withProxy, K8S_EGRESS_PROXY: 'not a url' }), /K8S_EGRESS_PROXY/);
    const cfg = loadConfig({ ...withProxy, K8S_EGRESS_PROXY: 'http://proxy.net-system:3128 net-system app=proxy' });
    assert.deepEqual(cfg.K8S_EGRESS_PROXY, {
      url: 'http://proxy.net-system:3128',
      namespace: 'net-system',
      podLabels: { app: 'proxy' },
      port: 3128,
    });
    assert.equal(cfg.EGRESS_PROXY_SECRET_FILE, secretFile);
    assert.equal(readEgressProxySecret(secretFile), 'k'.repeat(64), 'one trailing newline is not part of the secret');
    assert.throws(() => loadConfig({ DATA_DIR: bare.DATA_DIR, K8S_EGRESS_PROXY: 'http://proxy.net-system:3128 net-system app=proxy' }), /K8S_EGRESS_PROXY: needs EGRESS_PROXY_SECRET_FILE and K8S_EGRESS_PROXY_REPORT_URL/);
    assert.throws(() => loadConfig({ DATA_DIR: bare.DATA_DIR, K8S_EGRESS_PROXY_REPORT_URL: 'http://proxy.net-system:3129' }), /K8S_EGRESS_PROXY_REPORT_URL: set K8S_EGRESS_PROXY too/);
  });

  it('refuses an egress proxy secret file others can read, inside DATA_DIR, missing or too short, and a report URL that is more than an origin', () => {
    const dir = path.join(root, 'secrets');
    fs.mkdirSync(dir, { recursive: true });
    const file = (name: string, text: string, mode: number) => {
      const f = path.join(dir, name);
      fs.writeFileSync(f, text);
      fs.chmodSync(f, mode);
      return f;
    };
    const load = (f: string) => loadConfig({ DATA_DIR: bare.DATA_DIR, EGRESS_PROXY_SECRET_FILE: f });
    assert.throws(() => load(file('open', 'k'.repeat(64), 0o644)), /EGRESS_PROXY_SECRET_FILE: .* is readable by every user \(mode 644\)/);
    assert.throws(() => load(file('short', 'k'.repeat(31), 0o600)), /EGRESS_PROXY_SECRET_FILE: the secret is shorter than 32 characters/);
    assert.throws(() => load(path.join(dir, 'absent')), /EGRESS_PROXY_SECRET_FILE: no file at/);
    assert.throws(() => load(dir), /EGRESS_PROXY_SECRET_FILE: .* is not a regular file/);
    fs.mkdirSync(bare.DATA_DIR, { recursive: true });
    const inData = path.join(bare.DATA_DIR, 'secret');
    fs.writeFileSync(inData, 'k'.repeat(64), { mode: 0o600 });
    assert.throws(() => load(inData), /EGRESS_PROXY_SECRET_FILE: must not be inside DATA_DIR/);
    assert.equal(load(file('group', 'k'.repeat(32), 0o440)).EGRESS_PROXY_SECRET_FILE, path.join(dir, 'group'), 'the group may read it (a Secret volume with fsGroup)');
    for (const url of ['http://user:pw@proxy:3129', 'http://proxy:3129/egress', 'http://proxy:3129?x=1', 'ftp://proxy:3129', 'proxy:3129x']) {
      assert.throws(() => loadConfig({ K8S_EGRESS_PROXY_REPORT_URL: url }), /K8S_EGRESS_PROXY_REPORT_URL/, url);
    }
  });
});

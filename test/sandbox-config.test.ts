/**
 * Which sandbox driver the configuration gets, and what it says when commands are not isolated.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig } from '../workers/config';
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

  it('names the variable of a malformed egress proxy', () => {
    assert.throws(() => loadConfig({ K8S_EGRESS_PROXY: 'not a url' }), /K8S_EGRESS_PROXY/);
    assert.deepEqual(loadConfig({ K8S_EGRESS_PROXY: 'http://proxy.net-system:3128 net-system app=proxy' }).K8S_EGRESS_PROXY, {
      url: 'http://proxy.net-system:3128',
      namespace: 'net-system',
      podLabels: { app: 'proxy' },
      port: 3128,
    });
  });
});

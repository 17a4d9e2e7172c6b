/**
 * Sandbox benchmark: how long until a new sandbox can run its first command ("ready"), and
 * what one command costs on top of the command itself ("exec overhead", measured with `true`),
 * for the process, gVisor and Kubernetes pod drivers, all in one run so the ratios compare.
 *
 *   npm run bench:sandbox                  # 20 sandboxes and 100 commands per driver
 *   BENCH_SANDBOXES=5 BENCH_EXECS=20 npm run bench:sandbox
 *
 * Each driver works on a real clone of a small repository. The Kubernetes figures are against
 * the local kube-apiserver with kwok's fake node (no image pull, no container start): they are
 * the cost of the API path (create, watch, exec, copy in and out), not of a real node.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { clone } from '../activities/git/workspace';
import type { SandboxDriver } from '../activities/sandbox/driver';
import { GvisorSandboxDriver } from '../activities/sandbox/gvisor';
import { KubernetesSandboxDriver } from '../activities/sandbox/k8s';
import { ProcessSandboxDriver } from '../activities/sandbox/process';
import type { Logger } from '../workers/log';
import { resolveRunsc } from '../workers/sandbox';
import { makeOriginRepo, tempDir } from '../test/support/git-fixture';
import { kubeToolsBinDir, startKubeCluster, type KubeCluster } from '../test/support/kube-cluster';
import { summary } from './stats';

const SANDBOXES = Number(process.env.BENCH_SANDBOXES ?? 20);
const EXECS = Number(process.env.BENCH_EXECS ?? 100);
const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

const EXEC = { timeoutMs: 30_000, maxOutputBytes: 64 * 1024 };

async function measure(name: string, driver: SandboxDriver, origin: string, root: string): Promise<Record<string, unknown>> {
  const ready: number[] = [];
  const exec: number[] = [];
  for (let i = 0; i < SANDBOXES; i++) {
    const id = `bench-${name}-${i}`;
    const dir = path.join(root, name, 'workspaces', id);
    await clone(origin, 'main', dir);
    const t0 = performance.now();
    const handle = await driver.provision({ id, hostWorkdir: dir });
    const first = await driver.exec(handle, 'true', EXEC);
    ready.push(performance.now() - t0);
    if (first.exitCode !== 0) throw new Error(`${name}: first command failed: ${first.output}`);
    if (i === 0) {
      for (let j = 0; j < EXECS; j++) {
        const t = performance.now();
        const res = await driver.exec(handle, 'true', EXEC);
        exec.push(performance.now() - t);
        if (res.exitCode !== 0) throw new Error(`${name}: command failed: ${res.output}`);
      }
    }
    await driver.teardown(handle);
  }
  return { driver: name, isolation: driver.isolation, ready_ms: summary(ready), exec_overhead_ms: summary(exec) };
}

async function main(): Promise<void> {
  const root = tempDir('bench-sandbox');
  const origin = makeOriginRepo(root, { 'README.md': '# bench\n', 'src/a.txt': 'a\n'.repeat(100) });
  const results: Record<string, unknown>[] = [];
  let cluster: KubeCluster | null = null;
  try {
    results.push(await measure('process', new ProcessSandboxDriver({ root: path.join(root, 'process', 'sandboxes'), log: quiet }), origin, root));

    const runsc = await resolveRunsc();
    if (runsc === null) throw new Error('runsc is not installed: run `npm run setup`');
    const gvisor = new GvisorSandboxDriver({ root: path.join(root, 'gvisor', 'sandboxes'), runsc, log: quiet });
    results.push({ ...(await measure('gvisor', gvisor, origin, root)), runsc: await gvisor.version(), runsc_path: runsc });
    await gvisor.releaseHost();

    const binDir = await kubeToolsBinDir();
    if (binDir) {
      cluster = await startKubeCluster({ dir: path.join(root, 'cluster'), binDir });
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(cluster.kubeconfigPath);
      await kc.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: 'bench' } } });
      await kc.makeApiClient(k8s.NodeV1Api).createRuntimeClass({ body: { metadata: { name: 'gvisor' }, handler: 'runsc' } });
      const driver = new KubernetesSandboxDriver({
        kubeConfig: kc,
        namespace: 'bench',
        image: 'debian:bookworm-slim',
        log: quiet,
        workspacePath: path.join(cluster.execWorkDir, 'ws'),
        tmpPath: path.join(cluster.execWorkDir, 'tmp'),
      });
      results.push({ ...(await measure('k8s', driver, origin, root)), note: 'local kube-apiserver + kwok fake node: API path only' });
    } else {
      results.push({ driver: 'k8s', skipped: 'kube-apiserver/etcd/kwok not built (bash k8s/tools/build.sh)' });
    }
  } finally {
    await cluster?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
  const out = {
    date: new Date().toISOString(),
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.release()}`,
    node: process.version,
    sandboxes_per_driver: SANDBOXES,
    execs: EXECS,
    results,
  };
  console.log(JSON.stringify(out, null, 2));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

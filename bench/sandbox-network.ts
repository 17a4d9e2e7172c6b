/**
 * gVisor sandbox ready time with networking (its own network namespaces and the proxy's listener)
 * against `--network=none`, in one run with the two kinds alternating so the ratio compares; and what
 * the network's own pieces cost: making the two namespaces, making the listener inside the proxy side,
 * removing them.
 *
 *   npm run bench:sandbox-network               # 10 sandboxes of each kind
 *   BENCH_SANDBOXES=20 npm run bench:sandbox-network
 *
 * "Ready" is from `provision` around a fresh clone until its first command (`true`) returned, as in
 * `bench/sandbox.ts`. The proxy is a stand-in that only holds the listeners: what is measured is the
 * driver's path, not the proxy's.
 */
import type { Server } from 'node:net';
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import type { EgressGrant, EgressProxyPort, EgressReport } from '../activities/egress/types';
import { clone } from '../activities/git/workspace';
import { GvisorSandboxDriver } from '../activities/sandbox/gvisor';
import { SandboxNetworks } from '../activities/sandbox/gvisor-net';
import type { Logger } from '../workers/log';
import { resolveRunsc } from '../workers/sandbox';
import { makeOriginRepo, tempDir } from '../test/support/git-fixture';
import { summary } from './stats';

const SANDBOXES = Number(process.env.BENCH_SANDBOXES ?? 10);
const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const EXEC = { timeoutMs: 30_000, maxOutputBytes: 64 * 1024 };
const GRANT: EgressGrant = { allow: ['bench.test'], step: 'bench' };

/** Holds each task's listener and reports nothing: the driver's side of the port, without a proxy behind it. */
class ListenerHolder implements EgressProxyPort {
  private readonly servers = new Map<string, Server>();
  serveTask(taskId: string, server: Server): void {
    this.servers.set(taskId, server);
  }
  serves(taskId: string): boolean {
    return this.servers.has(taskId);
  }
  setGrant(_taskId: string, _grant: EgressGrant | null): void {}
  take(_taskId: string): EgressReport {
    return { allowed: 0, blocked: [], blocked_count: 0, bytes_sent: 0, bytes_received: 0 };
  }
  release(taskId: string): void {
    this.servers.get(taskId)?.close();
    this.servers.delete(taskId);
  }
}

async function main(): Promise<void> {
  const runsc = await resolveRunsc();
  if (runsc === null) throw new Error('runsc is not installed: run `npm run setup`');
  const root = tempDir('bench-sandbox-network');
  const origin = makeOriginRepo(root, { 'README.md': '# bench\n', 'src/a.txt': 'a\n'.repeat(100) });
  const proxy = new ListenerHolder();
  const driver = new GvisorSandboxDriver({ root: path.join(root, 'sandboxes'), runsc, log: quiet, egress: proxy });
  const ready = { none: [] as number[], network: [] as number[] };
  const parts = { namespaces: [] as number[], listener: [] as number[], removal: [] as number[] };
  try {
    // One sandbox of each kind first, unmeasured: runsc's first start in a run pays for loading itself.
    for (let i = -1; i < SANDBOXES; i++) {
      for (const kind of ['none', 'network'] as const) {
        const id = `bench-${kind}-${i + 1}`;
        const dir = path.join(root, 'workspaces', id);
        await clone(origin, 'main', dir);
        const t0 = performance.now();
        const handle = await driver.provision({ id, hostWorkdir: dir, egressAllowlist: kind === 'network' ? GRANT.allow : [] });
        const first = await driver.exec(handle, 'true', { ...EXEC, ...(kind === 'network' ? { egress: GRANT } : {}) });
        if (i >= 0) ready[kind].push(performance.now() - t0);
        if (first.exitCode !== 0) throw new Error(`${kind}: first command failed: ${first.output}`);
        await driver.teardown(handle);
      }
    }
    // The network's pieces alone, on namespaces of their own.
    const nets = new SandboxNetworks({ root: path.join(root, 'parts'), proxy, log: quiet });
    for (let i = 0; i < SANDBOXES; i++) {
      const id = `bench-part-${i}`;
      let t = performance.now();
      await nets.prepare(id);
      parts.namespaces.push(performance.now() - t);
      t = performance.now();
      await nets.ensureServed(id);
      parts.listener.push(performance.now() - t);
      t = performance.now();
      await nets.remove(id);
      parts.removal.push(performance.now() - t);
    }
  } finally {
    for (const id of await driver.list()) await driver.teardown({ id, driver: 'gvisor', isolation: 'gvisor', workdir: '/workspace', hostWorkdir: path.join(root, 'workspaces', id) });
    await driver.releaseHost();
    fs.rmSync(root, { recursive: true, force: true });
  }
  const none = summary(ready.none);
  const network = summary(ready.network);
  const out = {
    date: new Date().toISOString(),
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.release()}`,
    node: process.version,
    runsc: await driver.version(),
    sandboxes_per_kind: SANDBOXES,
    ready_ms: { network_none: none, network_sandbox: network },
    ratio: { p50: Math.round((network.p50 / none.p50) * 100) / 100, p95: Math.round((network.p95 / none.p95) * 100) / 100 },
    network_parts_ms: { namespaces: summary(parts.namespaces), listener: summary(parts.listener), removal: summary(parts.removal) },
  };
  console.log(JSON.stringify(out, null, 2));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

/**
 * Smoke test of the test Kubernetes cluster (test/support/kube-cluster.ts): a
 * real kube-apiserver + etcd + scheduler + controller manager with a kwok node.
 * A pod without nodeName is scheduled and goes Running, RBAC is enforced for
 * service-account kubeconfigs, and `pods/exec` through the API server runs the
 * command and reports its output and exit code.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { CoreV1Api, Exec, KubeConfig, NodeV1Api, type V1Status } from '@kubernetes/client-node';
import { kubeToolsBinDir, startKubeCluster, type KubeCluster } from './support/kube-cluster';

const NS = 'smoke';

function collector(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(Buffer.from(chunk));
      done();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

/** Exit code from the exec status channel: 0 on Success, the ExitCode cause on NonZeroExitCode. */
function exitCodeOf(status: V1Status): number {
  if (status.status === 'Success') return 0;
  const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
  if (status.reason === 'NonZeroExitCode' && cause?.message) return Number(cause.message);
  throw new Error(`exec failed: ${JSON.stringify(status)}`);
}

async function execInPod(kc: KubeConfig, namespace: string, pod: string, container: string, command: string[], timeoutMs = 20_000) {
  const stdout = collector();
  const stderr = collector();
  const status = await new Promise<V1Status>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`exec ${command.join(' ')} timed out after ${timeoutMs} ms`)), timeoutMs);
    const settle = (fn: () => void) => {
      clearTimeout(timer);
      fn();
    };
    new Exec(kc)
      .exec(namespace, pod, container, command, stdout.stream, stderr.stream, null, false, (s) => settle(() => resolve(s)))
      .then((ws) => {
        ws.on('error', (err: Error) => settle(() => reject(err)));
        // The status message arrives before the close; a close without one is a failure.
        ws.on('close', (code: number, reason: Buffer) => setTimeout(() => settle(() => reject(new Error(`exec closed without a status (${code} ${reason.toString()})`))), 200));
      }, (err: unknown) => settle(() => reject(err)));
  });
  return { stdout: stdout.text(), stderr: stderr.text(), exitCode: exitCodeOf(status) };
}

async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('the test Kubernetes cluster (kube-apiserver + etcd + kwok)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-inbox-kube-'));
  let cluster: KubeCluster | undefined;
  let setupError: unknown;
  let kc: KubeConfig;
  let core: CoreV1Api;

  // A missing build fails every test here (never skips): the binaries are a test prerequisite.
  before(async () => {
    try {
      const binDir = await kubeToolsBinDir();
      if (!binDir) {
        throw new Error('the Kubernetes test binaries are not built: run `bash k8s/tools/build.sh` (slow once, then cached outside the repo)');
      }
      const started = Date.now();
      cluster = await startKubeCluster({ dir, binDir });
      console.log(`kube cluster up in ${Date.now() - started} ms at ${cluster.server}`);
      kc = new KubeConfig();
      kc.loadFromFile(cluster.kubeconfigPath);
      core = kc.makeApiClient(CoreV1Api);
    } catch (err) {
      setupError = err;
    }
  });

  function started(): KubeCluster {
    if (setupError) throw setupError;
    assert.ok(cluster, 'the cluster did not start');
    return cluster;
  }

  after(async () => {
    await cluster?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('schedules a pod to the kwok node, runs it, and execs a command in it', async () => {
    const cluster = started();
    await core.createNamespace({ body: { metadata: { name: NS } } });
    await kc.makeApiClient(NodeV1Api).createRuntimeClass({ body: { metadata: { name: 'gvisor' }, handler: 'runsc' } });
    // The controller manager gives every namespace its default service account; pods need it.
    await until('service account smoke/default', 30_000, async () => (await core.readNamespacedServiceAccount({ name: 'default', namespace: NS })).metadata?.name);

    await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: { name: 'box' },
        spec: {
          runtimeClassName: 'gvisor',
          automountServiceAccountToken: false,
          containers: [{ name: 'main', image: 'busybox', command: ['sleep', 'infinity'] }],
        },
      },
    });
    const pod = await until('pod smoke/box Running', 30_000, async () => {
      const p = await core.readNamespacedPod({ name: 'box', namespace: NS });
      return p.status?.phase === 'Running' ? p : undefined;
    });
    assert.equal(pod.spec?.nodeName, cluster.nodeName, 'the scheduler bound the pod to the kwok node');

    const res = await execInPod(kc, NS, 'box', 'main', ['sh', '-c', 'echo hi; exit 3']);
    assert.equal(res.stdout, 'hi\n');
    assert.equal(res.exitCode, 3);

    const ok = await execInPod(kc, NS, 'box', 'main', ['sh', '-c', 'echo oops >&2']);
    assert.deepEqual(ok, { stdout: '', stderr: 'oops\n', exitCode: 0 });
  });

  it('enforces RBAC for service-account kubeconfigs', async () => {
    const cluster = started();
    const saConfig = new KubeConfig();
    saConfig.loadFromFile(await cluster.kubeconfigFor(NS, 'driver'));
    const saCore = saConfig.makeApiClient(CoreV1Api);
    await assert.rejects(saCore.listNamespacedPod({ namespace: NS }), (err: unknown) => (err as { code?: number }).code === 403);
  });
});

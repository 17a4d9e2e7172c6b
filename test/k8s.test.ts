/**
 * The Kubernetes pod driver against a real kube-apiserver and etcd (with kwok standing in for
 * the node's kubelet), driven through the real activities on a real git origin, authenticated
 * as the worker's service account bound by `k8s/rbac.yaml`, in the namespace `k8s/namespace.yaml`
 * makes (Pod Security `restricted` enforced by the API server).
 *
 * kwok runs exec'd commands as plain processes on this host, so what this suite shows is the
 * driver's contract with the API server (objects accepted, watch, exec protocol, sync, teardown,
 * RBAC), not gVisor inside the pod: the gVisor driver's suite covers isolation.
 *
 * The binaries are built by `bash k8s/tools/build.sh` (`.ci/run` calls it); without them this suite fails.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { createActivities } from '../activities';
import { ArtifactStore } from '../activities/artifacts/store';
import { KubernetesSandboxDriver } from '../activities/sandbox/k8s';
import { podName } from '../activities/sandbox/k8s-objects';
import type { Activities } from '../activities/types';
import type { Logger } from '../workers/log';
import { makeOriginRepo, tempDir } from './support/git-fixture';
import { kubeToolsBinDir, startKubeCluster, type KubeCluster } from './support/kube-cluster';
import { applyManifests } from './support/kube-manifests';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const NS = 'agent-sandboxes';

let root: string;
let cluster: KubeCluster;
let admin: k8s.KubeConfig;
let worker: k8s.KubeConfig;
let origin: string;
let dataDir: string;
let counter = 0;

function makeDriver(opts: { logs?: string[]; egressProxy?: boolean; driver?: Record<string, unknown> } = {}): KubernetesSandboxDriver {
  const n = ++counter;
  const log: Logger = opts.logs ? { ...quiet, info: (m) => void opts.logs!.push(m) } : quiet;
  return new KubernetesSandboxDriver({
    kubeConfig: worker,
    namespace: NS,
    image: 'debian:bookworm-slim',
    log,
    // kwok runs commands on this host, so the pod's paths must be private directories here.
    workspacePath: path.join(cluster.execWorkDir, `ws-${n}`),
    tmpPath: path.join(cluster.execWorkDir, `tmp-${n}`),
    ...(opts.egressProxy
      ? {
          egress: {
            proxy: { url: 'http://egress-proxy.agent-inbox:3128', namespace: 'agent-inbox', podLabels: { 'app.kubernetes.io/name': 'egress-proxy' }, port: 3128 },
            secret: 's'.repeat(40),
            reportUrl: 'http://egress-proxy.agent-inbox:3129',
          },
        }
      : {}),
    ...opts.driver,
  });
}

/** The real activities on a fresh pod for `id`; `step` runs one recipe step from the last checkpoint it returned. */
async function podTask(id: string, driver = makeDriver()) {
  const acts = activitiesFor(driver);
  const p = await acts.provisionSandbox({ task_id: id, repo: origin, base_branch: 'main' });
  let checkpoint = p.checkpoint;
  let index = 0;
  return {
    acts,
    sandbox: p.sandbox,
    /** The pod's working copy (kwok runs pods' commands on this host, so it is a directory here). */
    podDir: p.sandbox.workdir,
    host: p.sandbox.hostWorkdir,
    async step(command: string, timeout = 30) {
      const r = await acts.runStep({ task_id: id, sandbox: p.sandbox, index: index++, round: 1, command, timeout_seconds: timeout, checkpoint, env: {} });
      checkpoint = r.checkpoint;
      return r;
    },
    teardown: () => acts.teardownSandbox({ task_id: id, sandbox: p.sandbox }),
  };
}

/** Asserts that `p` fails the step as a non-retryable `SandboxLimit` whose message matches `message`. */
async function refusedStep(p: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: { type?: string; nonRetryable?: boolean; message: string }) => {
    assert.equal(err.type, 'SandboxLimit', err.message);
    assert.equal(err.nonRetryable, true);
    assert.match(err.message, message);
    return true;
  });
}

/** Host `tar` processes working on a copy-back of the working copy at `host` (its fresh directory is named after it). */
function copyBackTars(host: string): string[] {
  const marker = path.join(path.dirname(host), `.${path.basename(host)}.sync-`);
  return fs
    .readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map((n) => {
      try {
        return fs.readFileSync(`/proc/${n}/cmdline`, 'utf8').split('\0');
      } catch {
        return [];
      }
    })
    .filter((argv) => path.basename(argv[0] ?? '') === 'tar' && argv.some((a) => a.startsWith(marker)))
    .map((argv) => argv.join(' '));
}

/** Leftover fresh or old copies next to the working copy at `host`. */
function syncLeftovers(host: string): string[] {
  return fs.readdirSync(path.dirname(host)).filter((n) => n.startsWith(`.${path.basename(host)}.sync-`));
}

function activitiesFor(driver: KubernetesSandboxDriver, egressCeiling: string[] = []): Activities {
  return createActivities({ sandbox: driver, artifacts: new ArtifactStore(path.join(dataDir, 'artifacts')), dataDir, log: quiet, egressCeiling });
}

async function status(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (err) {
    return (err as { code?: number }).code ?? -1;
  }
}

describe('Kubernetes pod sandbox driver', () => {
  before(async () => {
    const binDir = await kubeToolsBinDir();
    assert.ok(binDir, 'kube-apiserver, etcd and kwok are not built: run `bash k8s/tools/build.sh` (or `npm run setup:test`)');
    root = tempDir('k8s-');
    cluster = await startKubeCluster({ dir: path.join(root, 'cluster'), binDir });
    admin = new k8s.KubeConfig();
    admin.loadFromFile(cluster.kubeconfigPath);
    await applyManifests(admin, ['namespace.yaml', 'runtimeclass.yaml', 'rbac.yaml']);
    worker = new k8s.KubeConfig();
    worker.loadFromFile(await cluster.kubeconfigFor('agent-inbox', 'agent-inbox-worker'));
    origin = makeOriginRepo(root, { 'README.md': '# demo\n', 'src/a.txt': 'a\n' });
    dataDir = path.join(root, 'data');
  });

  after(async () => {
    await cluster?.stop();
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it('creates a hardened gVisor pod and its NetworkPolicy that the API server accepts, and waits for Running', async () => {
    const driver = makeDriver();
    const acts = activitiesFor(driver);
    const id = 'k8s-Task_1';
    const deadline = new Date(Date.now() + 30 * 60_000).toISOString();
    const p = await acts.provisionSandbox({ task_id: id, repo: origin, base_branch: 'main', deadline_at: deadline, egress_allowlist: ['registry.npmjs.org'] });
    assert.equal(p.sandbox.driver, 'k8s');
    assert.equal(p.sandbox.isolation, 'runtimeClass:gvisor');

    const core = admin.makeApiClient(k8s.CoreV1Api);
    const pod = await core.readNamespacedPod({ name: podName(id), namespace: NS });
    assert.equal(pod.status?.phase, 'Running');
    const spec = pod.spec!;
    assert.equal(spec.runtimeClassName, 'gvisor');
    assert.equal(spec.automountServiceAccountToken, false);
    assert.equal(spec.enableServiceLinks, false);
    assert.equal(spec.restartPolicy, 'Never');
    assert.ok(spec.activeDeadlineSeconds! > 1700 && spec.activeDeadlineSeconds! <= 1800, String(spec.activeDeadlineSeconds));
    assert.equal(spec.securityContext?.runAsNonRoot, true);
    assert.equal(spec.securityContext?.seccompProfile?.type, 'RuntimeDefault');
    const c = spec.containers[0]!;
    assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL']);
    assert.equal(c.securityContext?.allowPrivilegeEscalation, false);
    assert.equal(c.securityContext?.readOnlyRootFilesystem, true);
    assert.deepEqual(c.resources?.requests, c.resources?.limits);
    assert.deepEqual(Object.keys(c.resources!.limits!).sort(), ['cpu', 'ephemeral-storage', 'memory']);
    assert.deepEqual(spec.volumes!.map((v) => [v.name, v.emptyDir?.sizeLimit]), [['workspace', '2Gi'], ['tmp', '1Gi']]);
    assert.equal(pod.metadata?.annotations?.['agent-inbox.dev/task-id'], id);
    assert.equal(c.env?.some((e) => /proxy/i.test(e.name)), false, 'no proxy configured: no proxy variables');

    const net = admin.makeApiClient(k8s.NetworkingV1Api);
    const policy = await net.readNamespacedNetworkPolicy({ name: podName(id), namespace: NS });
    assert.deepEqual(policy.spec?.policyTypes, ['Ingress', 'Egress']);
    assert.deepEqual(policy.spec?.egress ?? [], [], 'without an egress proxy nothing leaves, whatever the allowlist');
    assert.deepEqual(policy.spec?.podSelector?.matchLabels, pod.metadata?.labels && { 'agent-inbox.dev/sandbox': pod.metadata.labels['agent-inbox.dev/sandbox']! });
    assert.equal(policy.metadata?.ownerReferences?.[0]?.uid, pod.metadata?.uid);

    // The working copy was copied into the pod.
    assert.equal(fs.readFileSync(path.join(p.sandbox.workdir, 'README.md'), 'utf8'), '# demo\n');
    await acts.teardownSandbox({ task_id: id, sandbox: p.sandbox });
  });

  it('opens DNS and the egress proxy only for a task with an egress allowlist', async () => {
    const driver = makeDriver({ egressProxy: true });
    const acts = activitiesFor(driver, ['registry.npmjs.org', 'pypi.org']);
    const id = 'k8s-egress';
    const p = await acts.provisionSandbox({ task_id: id, repo: origin, base_branch: 'main', egress_allowlist: ['registry.npmjs.org', 'pypi.org'] });
    const pod = await admin.makeApiClient(k8s.CoreV1Api).readNamespacedPod({ name: podName(id), namespace: NS });
    assert.equal(pod.metadata?.annotations?.['agent-inbox.dev/egress-allowlist'], 'registry.npmjs.org,pypi.org');
    // A proxy URL without a command's own token would only fail: each command gets its own, never the pod spec.
    assert.deepEqual(pod.spec!.containers[0]!.env!.filter((e) => /proxy/i.test(e.name)), []);
    const policy = await admin.makeApiClient(k8s.NetworkingV1Api).readNamespacedNetworkPolicy({ name: podName(id), namespace: NS });
    const ports = policy.spec!.egress!.flatMap((r) => r.ports!.map((x) => `${x.protocol}/${x.port}`)).sort();
    assert.deepEqual(ports, ['TCP/3128', 'TCP/53', 'UDP/53']);
    await acts.teardownSandbox({ task_id: id, sandbox: p.sandbox });
  });

  it('runs steps through exec with their exit codes, brings the pod\'s files back, and restores checkpoints into the pod', async () => {
    const driver = makeDriver();
    const acts = activitiesFor(driver);
    const id = 'k8s-steps';
    const p = await acts.provisionSandbox({ task_id: id, repo: origin, base_branch: 'main' });
    const step = (index: number, command: string, checkpoint: string, timeout = 30) =>
      acts.runStep({ task_id: id, sandbox: p.sandbox, index, round: 1, command, timeout_seconds: timeout, checkpoint, env: { GREETING: "it's me" } });

    const first = await step(0, 'echo "$GREETING" > new.txt; echo more >> README.md; mkdir -p d && echo x > d/x; cat new.txt; exit 3', p.checkpoint);
    assert.equal(first.exit_code, 3);
    assert.equal(first.output_preview, "it's me\n");
    assert.deepEqual(first.changed_paths, ['README.md', 'd/x', 'new.txt']);
    const host = p.sandbox.hostWorkdir;
    assert.equal(fs.readFileSync(path.join(host, 'new.txt'), 'utf8'), "it's me\n");
    // The agent's git_diff works although the pod has no repository: it is answered from the worker's copy.
    const gd = await acts.agentToolCall({ task_id: id, sandbox: p.sandbox, call: { id: 'c1', name: 'git_diff', args: { path: '.' } }, checkpoint: first.checkpoint, default_timeout_seconds: 30, max_timeout_seconds: 60 });
    assert.equal(gd.ok, true, gd.output);
    assert.match(gd.output, /^\+it's me$/m);
    assert.match(gd.output, /^\+more$/m);
    assert.equal(gd.checkpoint, first.checkpoint);

    // A retry from the pristine checkpoint: the worker restores it and the pod sees exactly that.
    const retry = await step(1, 'ls; cat README.md', p.checkpoint);
    assert.equal(retry.exit_code, 0);
    assert.deepEqual(retry.output_preview.trim().split('\n'), ['README.md', 'src', '# demo']);
    assert.deepEqual(retry.changed_paths, []);

    // A timeout ends the command and what it started.
    const marker = `sleep 3${counter}.25`;
    const slow = await step(2, `(${marker}; echo late > late.txt) & ${marker}`, retry.checkpoint, 2);
    assert.equal(slow.timed_out, true);
    assert.equal(slow.exit_code, 124);
    await new Promise((r) => setTimeout(r, 300));
    const procs = fs
      .readdirSync('/proc')
      .filter((n) => /^\d+$/.test(n))
      .map((n) => fs.readFileSync(`/proc/${n}/cmdline`, 'utf8').replace(/\0/g, ' ').trim())
      .filter((cmd) => cmd === marker);
    assert.deepEqual(procs, [], 'the timed-out command\'s processes are gone');

    await acts.teardownSandbox({ task_id: id, sandbox: p.sandbox });
  });

  it('re-attaches a restarted worker to the running pod, lists it for the reaper, and deletes pod and policy on teardown', async () => {
    const driver = makeDriver();
    const acts = activitiesFor(driver);
    const id = 'k8s-reattach';
    const p = await acts.provisionSandbox({ task_id: id, repo: origin, base_branch: 'main' });
    const core = admin.makeApiClient(k8s.CoreV1Api);
    const uid = (await core.readNamespacedPod({ name: podName(id), namespace: NS })).metadata?.uid;

    const logs: string[] = [];
    const restarted = new KubernetesSandboxDriver({
      kubeConfig: worker,
      namespace: NS,
      image: 'debian:bookworm-slim',
      log: { ...quiet, info: (m) => void logs.push(m) },
      workspacePath: p.sandbox.workdir,
    });
    await restarted.provision({ id, hostWorkdir: p.sandbox.hostWorkdir });
    assert.ok(logs.includes('sandbox re-attached'));
    assert.equal((await core.readNamespacedPod({ name: podName(id), namespace: NS })).metadata?.uid, uid, 'the same pod');
    assert.ok((await restarted.list()).includes(id));

    await restarted.teardown(p.sandbox);
    assert.equal(await status(core.readNamespacedPod({ name: podName(id), namespace: NS })), 404);
    assert.equal(await status(admin.makeApiClient(k8s.NetworkingV1Api).readNamespacedNetworkPolicy({ name: podName(id), namespace: NS })), 404);
    assert.ok(!(await restarted.list()).includes(id));
    // Tearing down what is gone already succeeds.
    await restarted.teardown(p.sandbox);
  });

  it('refuses a FIFO or a device the pod leaves, naming it, and keeps the worker\'s copy and resets the pod', { timeout: 120_000 }, async () => {
    const t = await podTask('k8s-fifo');
    await refusedStep(t.step('echo changed >> README.md; mkfifo pipe; echo done'), /the command exited 0, but what it left was not copied back: "\.\/pipe" is a FIFO: only regular files, directories and symlinks are copied back/);
    assert.equal(fs.readFileSync(path.join(t.host, 'README.md'), 'utf8'), '# demo\n', 'the worker\'s copy is as it was');
    assert.equal(fs.existsSync(path.join(t.host, 'pipe')), false);
    assert.deepEqual(fs.readdirSync(t.podDir).sort(), ['README.md', 'src'], 'the pod was reset to the worker\'s copy');
    assert.equal(fs.readFileSync(path.join(t.podDir, 'README.md'), 'utf8'), '# demo\n');

    await refusedStep(t.step('mknod null c 1 3'), /"\.\/null" is a character device/);
    assert.equal(fs.existsSync(path.join(t.host, 'null')), false);
    assert.deepEqual(syncLeftovers(t.host), []);

    // The task goes on from the copy the worker kept.
    const next = await t.step('echo ok > ok.txt; ls');
    assert.equal(next.exit_code, 0);
    assert.deepEqual(next.changed_paths, ['ok.txt']);
    assert.deepEqual(next.output_preview.trim().split('\n'), ['README.md', 'ok.txt', 'src']);
    await t.teardown();
  });

  it('refuses a 4 GiB sparse file at its header instead of streaming it', { timeout: 120_000 }, async () => {
    const t = await podTask('k8s-sparse');
    await refusedStep(t.step('truncate -s 4G big'), /"\.\/big" is 4294967296 bytes: the archive would be larger than the copy-back limit of 2147483648 bytes/);
    assert.equal(fs.existsSync(path.join(t.host, 'big')), false);
    assert.equal(fs.existsSync(path.join(t.podDir, 'big')), false, 'the pod was reset');
    assert.deepEqual(syncLeftovers(t.host), []);
    assert.deepEqual(copyBackTars(t.host), []);
    await t.teardown();
  });

  it('brings a hard link in the pod back as a file of its own', async () => {
    const t = await podTask('k8s-hardlink');
    const r = await t.step('ln README.md hard');
    assert.deepEqual(r.changed_paths, ['hard']);
    const [a, b] = ['README.md', 'hard'].map((f) => fs.lstatSync(path.join(t.host, f)));
    assert.ok(a!.isFile() && b!.isFile());
    assert.equal(b!.nlink, 1, 'not a hard link on the worker');
    assert.notEqual(a!.ino, b!.ino);
    assert.equal(fs.readFileSync(path.join(t.host, 'hard'), 'utf8'), '# demo\n');
    await t.teardown();
  });

  it('caps the bytes and the files one copy-back may bring, failing the step with the cap', { timeout: 120_000 }, async () => {
    const bytes = await podTask('k8s-cap-bytes', makeDriver({ driver: { copyBack: { maxBytes: 1 << 20 } } }));
    await refusedStep(bytes.step('head -c 2000000 /dev/zero > blob'), /"\.\/blob" is 2000000 bytes: the archive would be larger than the copy-back limit of 1048576 bytes/);
    // Many files each under the cap: the cap on the stream still holds.
    await refusedStep(bytes.step('for i in 1 2 3 4 5 6; do head -c 200000 /dev/zero > part$i; done'), /copy-back limit of 1048576 bytes/);
    assert.deepEqual(fs.readdirSync(bytes.host).sort(), ['README.md', 'src']);
    await bytes.teardown();

    const files = await podTask('k8s-cap-files', makeDriver({ driver: { copyBack: { maxFiles: 20 } } }));
    await refusedStep(files.step('mkdir many && for i in $(seq 1 30); do : > many/$i; done'), /more than 20 files and directories \(the copy-back limit\)/);
    assert.equal(fs.existsSync(path.join(files.host, 'many')), false);
    assert.equal((await files.step('echo fine > fine.txt')).exit_code, 0, 'under the cap, steps go on');
    await files.teardown();
  });

  it('gives the workspace emptyDir its configured sizeLimit, and refuses a size that is not a quantity', async () => {
    const driver = makeDriver({ driver: { resources: { workspaceSize: '3Gi', tmpSize: '512Mi' } } });
    const t = await podTask('k8s-size', driver);
    const pod = await admin.makeApiClient(k8s.CoreV1Api).readNamespacedPod({ name: podName('k8s-size'), namespace: NS });
    assert.deepEqual(pod.spec!.volumes!.map((v) => [v.name, v.emptyDir?.sizeLimit]), [['workspace', '3Gi'], ['tmp', '512Mi']]);
    // The copy-back cap follows the workspace's size.
    await refusedStep(t.step('truncate -s 4G big'), /copy-back limit of 3221225472 bytes/);
    await t.teardown();
    assert.throws(() => makeDriver({ driver: { resources: { workspaceSize: 'lots' } } }), /workspace size "lots" is not a Kubernetes quantity/);
  });

  it('kills the host tar of a copy-back that runs past its deadline or is cancelled, keeping the worker\'s copy', { timeout: 120_000 }, async () => {
    const t = await podTask('k8s-sync-kill');
    // A second driver on the same pod whose copies must finish within a millisecond.
    const hasty = makeDriver({ driver: { syncTimeoutMs: 1, workspacePath: t.podDir } });
    await assert.rejects(
      hasty.exec(t.sandbox, 'echo late > late.txt', { timeoutMs: 30_000, maxOutputBytes: 1024 }),
      /copying the pod's working copy back did not finish within 0\.001 s/,
    );
    assert.deepEqual(copyBackTars(t.host), [], 'no host tar left running');
    assert.equal(fs.existsSync(path.join(t.host, 'late.txt')), false);
    assert.deepEqual(syncLeftovers(t.host), []);

    // Cancelled during the copy-back: the host tar is gone by the time exec rejects.
    const cancel = new AbortController();
    let seen: string[] = [];
    const watch = setInterval(() => {
      if (seen.length > 0) return;
      seen = copyBackTars(t.host);
      if (seen.length > 0) cancel.abort(new Error('cancelled by the test'));
    }, 10);
    try {
      await assert.rejects(
        makeDriver({ driver: { workspacePath: t.podDir } }).exec(t.sandbox, 'head -c 400000000 /dev/zero > blob', { timeoutMs: 60_000, maxOutputBytes: 1024, signal: cancel.signal }),
        { name: 'AbortError' },
      );
    } finally {
      clearInterval(watch);
    }
    assert.ok(seen.length > 0, 'the copy-back had started');
    assert.deepEqual(copyBackTars(t.host), [], 'no host tar left running');
    assert.equal(fs.existsSync(path.join(t.host, 'blob')), false);
    assert.deepEqual(syncLeftovers(t.host), []);
    await t.teardown();
  });

  it('gives the worker\'s service account what the driver needs and nothing else', async () => {
    // Everything above ran as that service account; here, what it must not do.
    const core = worker.makeApiClient(k8s.CoreV1Api);
    assert.equal(await status(core.listNamespacedSecret({ namespace: NS })), 403);
    assert.equal(await status(core.listNamespacedPod({ namespace: 'agent-inbox' })), 403);
    assert.equal(await status(core.listNamespacedPod({ namespace: 'default' })), 403);
    assert.equal(await status(core.deleteNamespace({ name: NS })), 403);
    assert.equal(await status(core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: 'x' } } })), 403);
    const rbac = worker.makeApiClient(k8s.RbacAuthorizationV1Api);
    assert.equal(await status(rbac.listNamespacedRole({ namespace: NS })), 403);
    // And a pod that is not hardened is refused by the namespace's Pod Security level, even for an admin.
    const adminCore = admin.makeApiClient(k8s.CoreV1Api);
    const loose: k8s.V1Pod = { metadata: { name: 'loose' }, spec: { containers: [{ name: 'c', image: 'debian:bookworm-slim' }] } };
    assert.equal(await status(adminCore.createNamespacedPod({ namespace: NS, body: loose })), 403);
  });
});

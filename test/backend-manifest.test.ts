/**
 * The shipped backend manifest on a real API server: it is accepted with strict field validation, the API and the
 * worker share one pod (so the API reads the artifacts the worker writes), both have probes, and only the worker
 * gets a Kubernetes token.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import YAML from 'yaml';
import { tempDir } from './support/git-fixture';
import { kubeToolsBinDir, startKubeCluster, type KubeCluster } from './support/kube-cluster';
import { REPO_ROOT } from './support/stack';

const NS = 'agent-inbox';
const TOKEN_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** The documents of a manifest under `k8s/`. */
function manifest(file: string): k8s.KubernetesObject[] {
  return YAML.parseAllDocuments(fs.readFileSync(path.join(REPO_ROOT, 'k8s', file), 'utf8'))
    .map((d) => d.toJS() as k8s.KubernetesObject | null)
    .filter((o): o is k8s.KubernetesObject => o !== null);
}

describe('the backend manifest', () => {
  let root: string;
  let cluster: KubeCluster;
  let admin: k8s.KubeConfig;

  before(async () => {
    const binDir = await kubeToolsBinDir();
    assert.ok(binDir, 'kube-apiserver, etcd and kwok are not built: run `bash k8s/tools/build.sh` (or `npm run setup:test`)');
    root = tempDir('manifest-');
    cluster = await startKubeCluster({ dir: path.join(root, 'cluster'), binDir });
    admin = new k8s.KubeConfig();
    admin.loadFromFile(cluster.kubeconfigPath);
    const objects = k8s.KubernetesObjectApi.makeApiClient(admin);
    for (const f of ['namespace.yaml', 'rbac.yaml']) for (const o of manifest(f)) await objects.create(o);
  });

  after(async () => {
    await cluster?.stop();
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it('is accepted strictly and runs the API and the worker in one pod with probes, the token only in the worker', async () => {
    const core = admin.makeApiClient(k8s.CoreV1Api);
    const apps = admin.makeApiClient(k8s.AppsV1Api);
    const docs = manifest('backend.yaml');
    assert.deepEqual(docs.map((d) => d.kind), ['ConfigMap', 'Service', 'StatefulSet'], 'no separate API Deployment with a volume of its own');
    for (const doc of docs) {
      // Strict: an unknown or misplaced field is an error, not a warning the server drops.
      if (doc.kind === 'ConfigMap') await core.createNamespacedConfigMap({ namespace: NS, body: doc as k8s.V1ConfigMap, fieldValidation: 'Strict' });
      if (doc.kind === 'Service') await core.createNamespacedService({ namespace: NS, body: doc as k8s.V1Service, fieldValidation: 'Strict' });
      if (doc.kind === 'StatefulSet') await apps.createNamespacedStatefulSet({ namespace: NS, body: doc as k8s.V1StatefulSet, fieldValidation: 'Strict' });
    }

    const service = docs.find((d) => d.kind === 'Service') as k8s.V1Service;
    const set = docs.find((d) => d.kind === 'StatefulSet') as k8s.V1StatefulSet;
    assert.deepEqual(service.spec!.selector, set.spec!.template.metadata!.labels, 'the API service selects the pod that holds the volume');

    // This cluster runs no StatefulSet controller, so make its pod as the controller would: the template plus a
    // claim per volumeClaimTemplate. Admission then checks every volume, mount and probe of it.
    const claims = (set.spec!.volumeClaimTemplates ?? []).map((t) => ({ name: t.metadata!.name!, persistentVolumeClaim: { claimName: `${t.metadata!.name}-${set.metadata!.name}-0` } }));
    const pod = await core.createNamespacedPod({
      namespace: NS,
      fieldValidation: 'Strict',
      body: {
        metadata: { name: `${set.metadata!.name}-0`, labels: set.spec!.template.metadata!.labels },
        spec: { ...set.spec!.template.spec!, volumes: [...(set.spec!.template.spec!.volumes ?? []), ...claims] },
      },
    });
    const byName = new Map((pod.spec!.containers ?? []).map((c) => [c.name, c]));
    const api = byName.get('api')!;
    const worker = byName.get('worker')!;
    assert.ok(api && worker, 'both containers in one pod');
    for (const c of [api, worker]) {
      assert.equal(c.livenessProbe?.httpGet?.path, '/livez', `${c.name} liveness`);
      assert.equal(c.readinessProbe?.httpGet?.path, '/healthz', `${c.name} readiness`);
    }
    const env = (c: k8s.V1Container, name: string): string | undefined => c.env?.find((e) => e.name === name)?.value;
    assert.equal(env(worker, 'ROLES'), 'worker');
    assert.equal(String(worker.readinessProbe!.httpGet!.port), 'health');
    assert.equal(worker.ports?.find((p) => p.name === 'health')?.containerPort, Number(env(worker, 'HEALTH_PORT')), 'the probes ask the port the worker serves health on');
    assert.equal(env(api, 'ROLES'), 'api');

    const dataOf = (c: k8s.V1Container): k8s.V1VolumeMount | undefined => c.volumeMounts?.find((m) => m.mountPath === '/data');
    assert.equal(dataOf(api)?.name, dataOf(worker)?.name, 'the API reads the volume the worker writes');
    assert.equal(dataOf(api)?.readOnly, true);
    assert.ok(!pod.spec!.volumes!.some((v) => v.name === dataOf(api)!.name && v.emptyDir), 'the shared data is the claim, not an emptyDir');

    assert.equal(pod.spec!.automountServiceAccountToken, false);
    assert.ok(!api.volumeMounts?.some((m) => m.mountPath === TOKEN_DIR), 'the API gets no Kubernetes token');
    const tokenMount = worker.volumeMounts?.find((m) => m.mountPath === TOKEN_DIR);
    assert.ok(tokenMount, 'the worker gets its service account token');
    assert.ok(pod.spec!.volumes!.find((v) => v.name === tokenMount.name)?.projected?.sources?.some((s) => s.serviceAccountToken));
  });
  it('accepts the egress proxy manifest strictly: a Deployment whose Service and NetworkPolicy select it, its secret from a Secret', async () => {
    const core = admin.makeApiClient(k8s.CoreV1Api);
    const apps = admin.makeApiClient(k8s.AppsV1Api);
    const net = admin.makeApiClient(k8s.NetworkingV1Api);
    const docs = manifest('egress-proxy.yaml');
    assert.deepEqual(docs.map((d) => d.kind), ['ConfigMap', 'Service', 'Deployment', 'NetworkPolicy']);
    for (const doc of docs) {
      if (doc.kind === 'ConfigMap') await core.createNamespacedConfigMap({ namespace: NS, body: doc as k8s.V1ConfigMap, fieldValidation: 'Strict' });
      if (doc.kind === 'Service') await core.createNamespacedService({ namespace: NS, body: doc as k8s.V1Service, fieldValidation: 'Strict' });
      if (doc.kind === 'Deployment') await apps.createNamespacedDeployment({ namespace: NS, body: doc as k8s.V1Deployment, fieldValidation: 'Strict' });
      if (doc.kind === 'NetworkPolicy') await net.createNamespacedNetworkPolicy({ namespace: NS, body: doc as k8s.V1NetworkPolicy, fieldValidation: 'Strict' });
    }
    const deployment = docs.find((d) => d.kind === 'Deployment') as k8s.V1Deployment;
    const labels = deployment.spec!.template.metadata!.labels;
    assert.deepEqual((docs.find((d) => d.kind === 'Service') as k8s.V1Service).spec!.selector, labels);
    assert.deepEqual((docs.find((d) => d.kind === 'NetworkPolicy') as k8s.V1NetworkPolicy).spec!.podSelector!.matchLabels, labels);
    const [container] = deployment.spec!.template.spec!.containers;
    assert.ok(container!.envFrom!.some((e) => e.secretRef?.name), 'the secret comes from a Secret');
    assert.deepEqual(container!.command, ['node', 'dist/workers/egress-proxy-main.js']);
  });
});

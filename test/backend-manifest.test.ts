/**
 * The shipped backend manifest on a real API server: it is accepted with strict field validation, the API runs as
 * one pod and the workers as several, all sharing the artifact bucket, both have probes, and only the workers
 * get a Kubernetes token; the worker's egress settings name the proxy's Service, pods and Secret as
 * egress-proxy.yaml makes them.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { loadConfig } from '../workers/config';
import { tempDir } from './support/git-fixture';
import { kubeToolsBinDir, startKubeCluster, type KubeCluster } from './support/kube-cluster';
import { manifest } from './support/kube-manifests';

const NS = 'agent-inbox';
const TOKEN_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

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

  it('is accepted strictly: the API as a StatefulSet of one, the workers as a Deployment of several, probes on both, the token only in the workers', async () => {
    const core = admin.makeApiClient(k8s.CoreV1Api);
    const apps = admin.makeApiClient(k8s.AppsV1Api);
    const docs = manifest('backend.yaml');
    assert.deepEqual(docs.map((d) => d.kind), ['ConfigMap', 'Service', 'StatefulSet', 'Deployment']);
    for (const doc of docs) {
      // Strict: an unknown or misplaced field is an error, not a warning the server drops.
      if (doc.kind === 'ConfigMap') await core.createNamespacedConfigMap({ namespace: NS, body: doc as k8s.V1ConfigMap, fieldValidation: 'Strict' });
      if (doc.kind === 'Service') await core.createNamespacedService({ namespace: NS, body: doc as k8s.V1Service, fieldValidation: 'Strict' });
      if (doc.kind === 'StatefulSet') await apps.createNamespacedStatefulSet({ namespace: NS, body: doc as k8s.V1StatefulSet, fieldValidation: 'Strict' });
      if (doc.kind === 'Deployment') await apps.createNamespacedDeployment({ namespace: NS, body: doc as k8s.V1Deployment, fieldValidation: 'Strict' });
    }
    const service = docs.find((d) => d.kind === 'Service') as k8s.V1Service;
    const set = docs.find((d) => d.kind === 'StatefulSet') as k8s.V1StatefulSet;
    const workers = docs.find((d) => d.kind === 'Deployment') as k8s.V1Deployment;
    assert.deepEqual(service.spec!.selector, set.spec!.template.metadata!.labels, 'the API service selects the API pods');
    assert.notDeepEqual(workers.spec!.template.metadata!.labels, set.spec!.template.metadata!.labels, 'and no worker');
    assert.ok(workers.spec!.replicas! > 1, 'several workers');

    // This cluster runs no controllers, so make the pods as they would: admission then checks every volume, mount and probe.
    const claims = (set.spec!.volumeClaimTemplates ?? []).map((t) => ({ name: t.metadata!.name!, persistentVolumeClaim: { claimName: `${t.metadata!.name}-${set.metadata!.name}-0` } }));
    const apiPod = await core.createNamespacedPod({
      namespace: NS,
      fieldValidation: 'Strict',
      body: { metadata: { name: `${set.metadata!.name}-0`, labels: set.spec!.template.metadata!.labels }, spec: { ...set.spec!.template.spec!, volumes: [...(set.spec!.template.spec!.volumes ?? []), ...claims] } },
    });
    const workerPod = await core.createNamespacedPod({
      namespace: NS,
      fieldValidation: 'Strict',
      body: { metadata: { name: `${workers.metadata!.name}-abc12`, labels: workers.spec!.template.metadata!.labels }, spec: workers.spec!.template.spec! },
    });
    const api = apiPod.spec!.containers.find((c) => c.name === 'api')!;
    const worker = workerPod.spec!.containers.find((c) => c.name === 'worker')!;
    assert.ok(api && worker);
    for (const c of [api, worker]) {
      assert.equal(c.livenessProbe?.httpGet?.path, '/livez', `${c.name} liveness`);
      assert.equal(c.readinessProbe?.httpGet?.path, '/healthz', `${c.name} readiness`);
    }
    const env = (c: k8s.V1Container, name: string): string | undefined => c.env?.find((e) => e.name === name)?.value;
    assert.equal(env(worker, 'ROLES'), 'worker');
    assert.equal(worker.env!.find((e) => e.name === 'WORKER_ID')?.valueFrom?.fieldRef?.fieldPath, 'metadata.name', 'each worker is named for its pod');
    assert.equal(String(worker.readinessProbe!.httpGet!.port), 'health');
    assert.equal(worker.ports?.find((p) => p.name === 'health')?.containerPort, Number(env(worker, 'HEALTH_PORT')), 'the probes ask the port the worker serves health on');
    assert.equal(env(api, 'ROLES'), 'api');
    assert.equal(env(api, 'API_AUTH'), 'tokens', 'an API other machines reach admits API tokens only');

    // Artifacts and checkpoints are in the bucket both read: a worker's own disk holds only its working copies.
    const configMap = docs.find((d) => d.kind === 'ConfigMap') as k8s.V1ConfigMap;
    assert.equal(configMap.data!.ARTIFACT_STORE, 's3');
    const dataOf = (pod: k8s.V1Pod, c: k8s.V1Container) => pod.spec!.volumes!.find((v) => v.name === c.volumeMounts!.find((m) => m.mountPath === '/data')!.name)!;
    assert.ok(dataOf(workerPod, worker).emptyDir, 'a worker keeps nothing on its own disk that outlives it');
    assert.ok(dataOf(apiPod, api).persistentVolumeClaim, 'the API keeps its tokens and sessions on its volume');
    for (const [pod, c] of [[apiPod, api], [workerPod, worker]] as const) {
      const mount = c.volumeMounts!.find((m) => configMap.data!.S3_SECRET_ACCESS_KEY_FILE!.startsWith(`${m.mountPath}/`));
      assert.ok(mount?.readOnly, `${c.name} reads the bucket's keys from a read-only mount`);
      const volume = pod.spec!.volumes!.find((v) => v.name === mount!.name)!;
      assert.equal(volume.secret!.defaultMode! & 0o007, 0, 'not readable by other users');
    }

    assert.equal(apiPod.spec!.automountServiceAccountToken, false);
    assert.equal(workerPod.spec!.automountServiceAccountToken, false);
    assert.ok(!api.volumeMounts?.some((m) => m.mountPath === TOKEN_DIR), 'the API gets no Kubernetes token');
    const tokenMount = worker.volumeMounts?.find((m) => m.mountPath === TOKEN_DIR);
    assert.ok(tokenMount, 'the worker gets its service account token');
    assert.ok(workerPod.spec!.volumes!.find((v) => v.name === tokenMount.name)?.projected?.sources?.some((s) => s.serviceAccountToken));
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

  it('points the worker at the egress proxy egress-proxy.yaml makes: its Service ports, its pods, its Secret as a file only the worker reads', () => {
    const backend = manifest('backend.yaml');
    const proxyDocs = manifest('egress-proxy.yaml');
    const set = backend.find((d) => d.kind === 'Deployment') as k8s.V1Deployment;
    const configMap = backend.find((d) => d.kind === 'ConfigMap') as k8s.V1ConfigMap;
    const spec = set.spec!.template.spec!;
    const worker = spec.containers.find((c) => c.name === 'worker')!;
    const api = (backend.find((d) => d.kind === 'StatefulSet') as k8s.V1StatefulSet).spec!.template.spec!.containers.find((c) => c.name === 'api')!;
    const env = Object.fromEntries(worker.env!.map((e) => [e.name, e.value!]));
    const service = proxyDocs.find((d) => d.kind === 'Service') as k8s.V1Service;
    const deployment = proxyDocs.find((d) => d.kind === 'Deployment') as k8s.V1Deployment;
    const policy = proxyDocs.find((d) => d.kind === 'NetworkPolicy') as k8s.V1NetworkPolicy;
    const proxyContainer = deployment.spec!.template.spec!.containers[0]!;
    const servicePort = (name: string) => service.spec!.ports!.find((p) => p.name === name)!;
    const containerPort = (name: string) => proxyContainer.ports!.find((p) => p.name === name)!.containerPort;

    // The worker's configuration parses as the worker would parse it, the secret file standing in for the mounted one.
    const dir = tempDir('manifest-secret-');
    const secretFile = path.join(dir, 'EGRESS_PROXY_SECRET');
    fs.writeFileSync(secretFile, 'k'.repeat(64), { mode: 0o440 });
    const keys = { S3_ACCESS_KEY_ID_FILE: path.join(dir, 'access-key-id'), S3_SECRET_ACCESS_KEY_FILE: path.join(dir, 'secret-access-key') };
    for (const f of Object.values(keys)) fs.writeFileSync(f, 'key', { mode: 0o440 });
    const cfg = loadConfig({ ...configMap.data, ...env, EGRESS_PROXY_SECRET_FILE: secretFile, ...keys, DATA_DIR: path.join(dir, 'data') });
    assert.equal(cfg.artifactStore.kind, 's3');
    fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(cfg.EGRESS_ALLOW, [], 'the shipped ceiling reaches nothing until the operator names something');
    const proxy = cfg.K8S_EGRESS_PROXY!;
    const proxyHost = `${service.metadata!.name}.${service.metadata!.namespace}`;
    assert.equal(new URL(proxy.url).hostname, proxyHost);
    assert.equal(proxy.port, servicePort('proxy').port);
    // A NetworkPolicy sees the pod's port (after the Service), so the sandbox's policy must name the container port.
    assert.equal(proxy.port, containerPort('proxy'), 'the Service keeps the proxy port as it is');
    assert.equal(proxy.namespace, deployment.metadata!.namespace);
    assert.deepEqual(proxy.podLabels, deployment.spec!.template.metadata!.labels);
    const report = new URL(cfg.K8S_EGRESS_PROXY_REPORT_URL!);
    assert.deepEqual([report.hostname, Number(report.port)], [proxyHost, servicePort('admin').port]);

    // The proxy's policy admits the backend's pods on the report port and sandbox pods on the proxy port.
    // Parsed YAML, not the client's model: the field is `from` (the model calls it `_from`).
    const admits = (port: number) => policy.spec!.ingress!.filter((r) => r.ports!.some((p) => p.port === port)).flatMap((r) => (r as { from?: k8s.V1NetworkPolicyPeer[] }).from!);
    assert.ok(admits(containerPort('admin')).some((f) => JSON.stringify(f.podSelector?.matchLabels) === JSON.stringify(set.spec!.template.metadata!.labels)));
    assert.ok(admits(containerPort('proxy')).some((f) => f.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'] === 'agent-sandboxes'));

    // The secret is the key the proxy reads from the same Secret, mounted for the worker alone, readable by no other user.
    const secretRef = proxyContainer.envFrom!.find((e) => e.secretRef)!.secretRef!.name;
    const mount = worker.volumeMounts!.find((m) => env.EGRESS_PROXY_SECRET_FILE!.startsWith(`${m.mountPath}/`))!;
    assert.ok(mount, 'EGRESS_PROXY_SECRET_FILE lies in a mount of the worker');
    assert.equal(mount.readOnly, true);
    const volume = spec.volumes!.find((v) => v.name === mount.name)!;
    assert.equal(volume.secret?.secretName, secretRef);
    assert.deepEqual(volume.secret!.items, [{ key: 'EGRESS_PROXY_SECRET', path: path.posix.relative(mount.mountPath, env.EGRESS_PROXY_SECRET_FILE!) }]);
    assert.equal(volume.secret!.defaultMode! & 0o007, 0, 'not readable by other users');
    assert.ok(!api.volumeMounts!.some((m) => m.name === mount.name), 'the API never sees the secret');
    assert.ok(!api.env!.some((e) => /EGRESS_PROXY/.test(e.name)) && !Object.keys(configMap.data!).some((k) => /EGRESS_PROXY/.test(k)), 'nor the proxy settings');
  });
});

/**
 * The shipped backend manifest on a real API server: it is accepted with strict field validation, the API and the
 * worker share one pod (so the API reads the artifacts the worker writes), both have probes, and only the worker
 * gets a Kubernetes token; the worker's egress settings name the proxy's Service, pods and Secret as
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
    assert.equal(env(api, 'API_AUTH'), 'tokens', 'an API other machines reach admits API tokens only');

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

  it('points the worker at the egress proxy egress-proxy.yaml makes: its Service ports, its pods, its Secret as a file only the worker reads', () => {
    const backend = manifest('backend.yaml');
    const proxyDocs = manifest('egress-proxy.yaml');
    const set = backend.find((d) => d.kind === 'StatefulSet') as k8s.V1StatefulSet;
    const configMap = backend.find((d) => d.kind === 'ConfigMap') as k8s.V1ConfigMap;
    const spec = set.spec!.template.spec!;
    const worker = spec.containers.find((c) => c.name === 'worker')!;
    const api = spec.containers.find((c) => c.name === 'api')!;
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
    const cfg = loadConfig({ ...configMap.data, ...env, EGRESS_PROXY_SECRET_FILE: secretFile, DATA_DIR: path.join(dir, 'data') });
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

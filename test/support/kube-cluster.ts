/**
 * A real, throwaway Kubernetes control plane for tests: etcd, kube-apiserver
 * (RBAC enforced), kube-scheduler, kube-controller-manager and kwok, all on
 * 127.0.0.1, with one kwok-managed fake node.
 *
 * The binaries are built once by `bash k8s/tools/build.sh` into a cache outside
 * the repository; `kubeToolsBinDir()` finds them without building anything.
 *
 * What is real: every API call goes through a real kube-apiserver backed by a
 * real etcd (validation, admission incl. RuntimeClass, ServiceAccount and
 * PodSecurity, RBAC, TokenRequest, watch). The scheduler binds pods to the fake
 * node, and the controller manager runs the service-account, namespace,
 * garbage-collector, quota, root-CA publisher and workload controllers.
 *
 * What is simulated, by kwok: the node and its kubelet. Pods bound to the fake
 * node go Running at once (nothing is pulled or started; Job pods go Succeeded;
 * deleted pods disappear at once). `pods/exec` through the API server is
 * served by kwok's kubelet endpoint, which runs the command as a plain child
 * process of kwok ON THIS HOST, in `execWorkDir` (shared by every pod and
 * container, with the host's filesystem and the test's user), and reports its
 * real stdout, stderr, stdin and exit code. NetworkPolicies are stored but not
 * enforced (no CNI); RuntimeClass handlers are accepted but not used.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { stringify as toYaml } from 'yaml';
import { freePorts } from './http';
import { makePki } from './kube-pki';
import { sleep, startProcess, stopProcess, type Proc } from './kube-processes';

export interface KubeCluster {
  /** `https://127.0.0.1:<port>` */
  server: string;
  /** Admin kubeconfig (client certificate in group system:masters), in `dir`. */
  kubeconfigPath: string;
  /** CA that signed the API server's serving certificate. */
  caFile: string;
  /** The kwok fake node that pods are scheduled to. */
  nodeName: string;
  /** Working directory of every command exec'd into a pod (a directory on this host, in `dir`). */
  execWorkDir: string;
  /** Directory holding one log file per process (etcd.log, kube-apiserver.log, ...). */
  logDir: string;
  /**
   * Path to a kubeconfig that authenticates as `system:serviceaccount:<namespace>:<serviceAccount>`
   * with a token from the TokenRequest API (valid 24 h). Creates the service account if it is missing;
   * the namespace must exist. Grants nothing: bind roles to test RBAC.
   */
  kubeconfigFor(namespace: string, serviceAccount: string): Promise<string>;
  /** Stops kwok, the scheduler, the controller manager, the API server and etcd. Removes no files. */
  stop(): Promise<void>;
}

export interface StartKubeClusterOptions {
  /** Directory for certificates, kubeconfigs, etcd data, logs and the exec working directory. */
  dir: string;
  /** Directory holding the binaries; defaults to `kubeToolsBinDir()`. */
  binDir?: string;
}

/** Annotation that marks a node as managed by this cluster's kwok. */
export const KWOK_NODE_ANNOTATION = 'kwok.x-k8s.io/node';

const REQUIRED_FILES = ['etcd', 'kube-apiserver', 'kube-scheduler', 'kube-controller-manager', 'kwok', 'kwok-stages.yaml'];
const NODE_NAME = 'kwok-node-0';
// Pod and service addresses are only ever written into objects: nothing
// connects to them. Loopback ranges keep every address on this machine.
const POD_CIDR = '127.64.0.0/16';
const SERVICE_CIDR = '127.96.0.0/16';
const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';
const START_TIMEOUT_MS = 90_000;

/** Repository root, found from this file whether it runs from source or from `dist/`. */
const REPO_ROOT = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..');

/**
 * The directory holding the built binaries, or undefined when they are not built.
 * `KUBE_TOOLS_BIN_DIR` overrides; otherwise asks `k8s/tools/build.sh --bin-dir`,
 * which only computes the cache path (it builds nothing).
 */
export async function kubeToolsBinDir(): Promise<string | undefined> {
  const override = process.env.KUBE_TOOLS_BIN_DIR;
  if (override) return hasAllTools(override) ? override : undefined;
  const script = path.join(REPO_ROOT, 'k8s', 'tools', 'build.sh');
  if (!fs.existsSync(script)) return undefined;
  const out = await new Promise<string | undefined>((resolve) => {
    execFile('bash', [script, '--bin-dir'], { timeout: 30_000 }, (err, stdout) => resolve(err ? undefined : stdout));
  });
  const dir = out?.trim().split('\n').pop();
  return dir && hasAllTools(dir) ? dir : undefined;
}

function hasAllTools(dir: string): boolean {
  return REQUIRED_FILES.every((f) => {
    try {
      return fs.statSync(path.join(dir, f)).size > 0;
    } catch {
      return false;
    }
  });
}

// ---------------------------------------------------------------------------
// A minimal HTTPS client for the API server (admin identity).

interface ApiClient {
  request(method: string, urlPath: string, body?: unknown, contentType?: string): Promise<{ status: number; body: any }>;
}

function apiClient(server: string, ca: string, cert: string, key: string): ApiClient {
  const agent = new https.Agent({ ca: fs.readFileSync(ca), cert: fs.readFileSync(cert), key: fs.readFileSync(key), keepAlive: false });
  return {
    request(method, urlPath, body, contentType = 'application/json') {
      return new Promise((resolve, reject) => {
        const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
        const req = https.request(
          new URL(urlPath, server),
          {
            method,
            agent,
            timeout: 10_000,
            headers: { accept: 'application/json', ...(payload ? { 'content-type': contentType, 'content-length': payload.length } : {}) },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              let parsed: unknown = text;
              try {
                parsed = JSON.parse(text);
              } catch {
                // not JSON (e.g. /readyz)
              }
              resolve({ status: res.statusCode ?? 0, body: parsed });
            });
            res.on('error', reject);
          },
        );
        req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
        req.on('error', reject);
        req.end(payload);
      });
    },
  };
}

/** Polls `check` until it returns true; rejects at the deadline or when any of `failures` fires. */
async function waitFor(what: string, deadline: number, failures: Promise<Error>[], check: () => Promise<boolean>): Promise<void> {
  let stopped = false;
  const failed = Promise.race(failures).then((err) => {
    if (!stopped) throw err;
  });
  failed.catch(() => undefined);
  let lastError = '';
  const poll = (async () => {
    while (!stopped) {
      try {
        if (await check()) return;
        lastError = '';
      } catch (err) {
        lastError = (err as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}`);
      await sleep(100);
    }
  })();
  try {
    await Promise.race([poll, failed]);
  } finally {
    stopped = true;
  }
}

function httpOk(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

function writeKubeconfig(file: string, server: string, caFile: string, user: Record<string, string>, name: string): void {
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'test', cluster: { server, 'certificate-authority': caFile } }],
    users: [{ name, user }],
    contexts: [{ name, context: { cluster: 'test', user: name } }],
    'current-context': name,
  };
  fs.writeFileSync(file, toYaml(config), { mode: 0o600 });
}

function kwokConfig(stages: string, execWorkDir: string): string {
  const clusterExec = {
    apiVersion: 'kwok.x-k8s.io/v1alpha1',
    kind: 'ClusterExec',
    metadata: { name: 'local-exec' },
    // No selector: every pod and container; commands run here, on this host.
    spec: { execs: [{ local: { workDir: execWorkDir } }] },
  };
  return `${stages.trimEnd()}\n---\n${toYaml(clusterExec)}`;
}

/** Starts a fresh cluster with all its state in `opts.dir` (about 3-5 s on 2 cores once built). */
export async function startKubeCluster(opts: StartKubeClusterOptions): Promise<KubeCluster> {
  const binDir = opts.binDir ?? (await kubeToolsBinDir());
  if (!binDir || !hasAllTools(binDir)) {
    throw new Error(`Kubernetes test binaries not found${binDir ? ` in ${binDir}` : ''}: run \`bash k8s/tools/build.sh\` first`);
  }
  const bin = (name: string) => path.join(binDir, name);
  const dir = path.resolve(opts.dir);
  const logDir = path.join(dir, 'logs');
  const execWorkDir = path.join(dir, 'exec');
  for (const d of [dir, logDir, execWorkDir, path.join(dir, 'kwok-home')]) fs.mkdirSync(d, { recursive: true });

  const deadline = Date.now() + START_TIMEOUT_MS;
  const [pki, [etcdClientPort, etcdPeerPort, apiPort, kwokPort]] = await Promise.all([makePki(path.join(dir, 'pki'), NODE_NAME, SERVICE_CIDR), freePorts(4)]);
  const server = `https://127.0.0.1:${apiPort}`;
  const kubeconfigPath = path.join(dir, 'admin.kubeconfig');
  writeKubeconfig(kubeconfigPath, server, pki.ca, { 'client-certificate': pki.admin.cert, 'client-key': pki.admin.key }, 'admin');

  const procs: Proc[] = [];
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // Clients of the API server first, then the API server, then its storage.
      const etcd = procs.filter((p) => p.name === 'etcd');
      const apiserver = procs.filter((p) => p.name === 'kube-apiserver');
      const others = procs.filter((p) => !etcd.includes(p) && !apiserver.includes(p));
      await Promise.all(others.map(stopProcess));
      await Promise.all(apiserver.map(stopProcess));
      await Promise.all(etcd.map(stopProcess));
    })();
    return stopping;
  };

  try {
    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
    const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
    const etcd = startProcess(
      'etcd',
      bin('etcd'),
      [
        '--name=test',
        `--data-dir=${path.join(dir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=test=${peerUrl}`,
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ],
      logDir,
    );
    procs.push(etcd);
    await waitFor('etcd', deadline, [etcd.failed], () => httpOk(`${etcdUrl}/health`));

    const apiserver = startProcess(
      'kube-apiserver',
      bin('kube-apiserver'),
      [
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${apiPort}`,
        '--advertise-address=127.0.0.1',
        `--tls-cert-file=${pki.apiserver.cert}`,
        `--tls-private-key-file=${pki.apiserver.key}`,
        `--client-ca-file=${pki.ca}`,
        `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
        `--service-account-key-file=${pki.sa.pub}`,
        `--service-account-signing-key-file=${pki.sa.key}`,
        `--service-cluster-ip-range=${SERVICE_CIDR}`,
        '--authorization-mode=Node,RBAC',
        // The kubelet endpoint (kwok) is verified against our CA.
        `--kubelet-certificate-authority=${pki.ca}`,
        `--kubelet-client-certificate=${pki.kubeletClient.cert}`,
        `--kubelet-client-key=${pki.kubeletClient.key}`,
        '--kubelet-preferred-address-types=InternalIP',
        // Endpoints may not hold loopback addresses; there is nothing to publish anyway.
        '--endpoint-reconciler-type=none',
        // No node-lifecycle controller runs to lift the not-ready taint from new nodes.
        '--disable-admission-plugins=TaintNodesByCondition',
        '--allow-privileged=true',
        '--profiling=false',
        '--v=1',
      ],
      logDir,
    );
    procs.push(apiserver);
    const admin = apiClient(server, pki.ca, pki.admin.cert, pki.admin.key);
    await waitFor('kube-apiserver /readyz', deadline, [etcd.failed, apiserver.failed], async () => {
      const res = await admin.request('GET', '/readyz');
      return res.status === 200;
    });

    // The node first, so kwok initializes it as soon as it starts.
    const created = await admin.request('POST', '/api/v1/nodes', fakeNode(kwokPort));
    if (created.status !== 201) throw new Error(`creating node ${NODE_NAME} failed: ${created.status} ${JSON.stringify(created.body)}`);

    const kwokConfigPath = path.join(dir, 'kwok.yaml');
    fs.writeFileSync(kwokConfigPath, kwokConfig(fs.readFileSync(bin('kwok-stages.yaml'), 'utf8'), execWorkDir));
    const kwok = startProcess(
      'kwok',
      bin('kwok'),
      [
        `--config=${kwokConfigPath}`,
        `--kubeconfig=${kubeconfigPath}`,
        '--manage-all-nodes=false',
        `--manage-nodes-with-annotation-selector=${KWOK_NODE_ANNOTATION}=fake`,
        '--node-ip=127.0.0.1',
        `--node-name=${NODE_NAME}`,
        `--node-port=${kwokPort}`,
        `--server-address=127.0.0.1:${kwokPort}`,
        `--tls-cert-file=${pki.kwok.cert}`,
        `--tls-private-key-file=${pki.kwok.key}`,
        `--cidr=${POD_CIDR}`,
      ],
      logDir,
      // kwok also reads ~/.kwok/kwok.yaml when it exists: keep the user's out.
      { ...process.env, HOME: path.join(dir, 'kwok-home') },
    );
    procs.push(kwok);
    const scheduler = startProcess(
      'kube-scheduler',
      bin('kube-scheduler'),
      [`--kubeconfig=${kubeconfigPath}`, '--leader-elect=false', '--secure-port=0', '--v=1'],
      logDir,
    );
    procs.push(scheduler);
    const controllerManager = startProcess(
      'kube-controller-manager',
      bin('kube-controller-manager'),
      [
        `--kubeconfig=${kubeconfigPath}`,
        '--leader-elect=false',
        '--secure-port=0',
        `--service-account-private-key-file=${pki.sa.key}`,
        `--root-ca-file=${pki.ca}`,
        '--controllers=' +
          [
            'serviceaccount-controller',
            'serviceaccount-token-controller',
            'namespace-controller',
            'garbage-collector-controller',
            'root-ca-certificate-publisher-controller',
            'resourcequota-controller',
            'clusterrole-aggregation-controller',
            'replicaset-controller',
            'deployment-controller',
            'job-controller',
            'ttl-after-finished-controller',
            'pod-garbage-collector-controller',
          ].join(','),
        '--v=1',
      ],
      logDir,
    );
    procs.push(controllerManager);

    const all = procs.map((p) => p.failed);
    await Promise.all([
      waitFor(`node ${NODE_NAME} Ready (kwok)`, deadline, all, async () => {
        const res = await admin.request('GET', `/api/v1/nodes/${NODE_NAME}`);
        const conditions: Array<{ type: string; status: string }> = res.body?.status?.conditions ?? [];
        return conditions.some((c) => c.type === 'Ready' && c.status === 'True');
      }),
      waitFor('kwok kubelet endpoint', deadline, all, () => tlsUp(kwokPort)),
      waitFor('service account default/default (kube-controller-manager)', deadline, all, async () => {
        const res = await admin.request('GET', '/api/v1/namespaces/default/serviceaccounts/default');
        return res.status === 200;
      }),
    ]);

    return {
      server,
      kubeconfigPath,
      caFile: pki.ca,
      nodeName: NODE_NAME,
      execWorkDir,
      logDir,
      kubeconfigFor: async (namespace, serviceAccount) => {
        const ns = encodeURIComponent(namespace);
        const sa = encodeURIComponent(serviceAccount);
        const made = await admin.request('POST', `/api/v1/namespaces/${ns}/serviceaccounts`, {
          apiVersion: 'v1',
          kind: 'ServiceAccount',
          metadata: { name: serviceAccount, namespace },
        });
        if (made.status !== 201 && made.status !== 409) {
          throw new Error(`creating service account ${namespace}/${serviceAccount} failed: ${made.status} ${JSON.stringify(made.body)}`);
        }
        const res = await admin.request('POST', `/api/v1/namespaces/${ns}/serviceaccounts/${sa}/token`, {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: { expirationSeconds: 24 * 3600 },
        });
        const token: unknown = res.body?.status?.token;
        if (res.status !== 201 || typeof token !== 'string') {
          throw new Error(`TokenRequest for ${namespace}/${serviceAccount} failed: ${res.status} ${JSON.stringify(res.body)}`);
        }
        const file = path.join(dir, `sa-${namespace}-${serviceAccount}.kubeconfig`);
        writeKubeconfig(file, server, pki.ca, { token }, `${namespace}-${serviceAccount}`);
        return file;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

function fakeNode(kubeletPort: number) {
  const resources = { cpu: '32', memory: '128Gi', pods: '110', 'ephemeral-storage': '1Ti' };
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: NODE_NAME,
      annotations: { [KWOK_NODE_ANNOTATION]: 'fake' },
      labels: {
        'kubernetes.io/hostname': NODE_NAME,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        type: 'kwok',
      },
    },
    spec: {},
    // Nodes may carry status on create (as kubelets register); kwok's
    // node-initialize stage then adds the Ready condition and keeps the rest.
    status: {
      capacity: resources,
      allocatable: resources,
      addresses: [
        { type: 'InternalIP', address: '127.0.0.1' },
        { type: 'Hostname', address: NODE_NAME },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: kubeletPort } },
      nodeInfo: {
        architecture: 'amd64',
        operatingSystem: 'linux',
        kubeletVersion: 'kwok',
        containerRuntimeVersion: 'kwok',
        kernelVersion: os.release(),
        osImage: 'kwok',
        kubeProxyVersion: '',
        machineID: '',
        systemUUID: '',
        bootID: '',
      },
    },
  };
}

function tlsUp(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port }, () => {
      sock.destroy();
      resolve(true);
    });
    sock.setTimeout(1_000, () => {
      sock.destroy();
      resolve(false);
    });
    sock.on('error', () => resolve(false));
  });
}

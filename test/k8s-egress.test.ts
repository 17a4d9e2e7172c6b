/**
 * Egress of the Kubernetes pod driver against a real kube-apiserver (kwok runs pods' commands on this
 * host, see k8s.test.ts) and a real egress proxy serving a shared loopback listener by token, with its
 * report port: commands reach only what their grant names, with credentials of their own that appear
 * nowhere but in the command's environment, the proxy's report comes back in the result, a token acts
 * only for the task it names, and a pod granted egress later gets its policy widened to the proxy and
 * DNS only while it runs.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { createEgressAdmin } from '../activities/egress/admin';
import { EgressProxy } from '../activities/egress/proxy';
import { identifyByToken } from '../activities/egress/shared';
import { signEgressToken } from '../activities/egress/token';
import type { EgressGrant } from '../activities/egress/types';
import type { SandboxHandle } from '../activities/sandbox/driver';
import { KubernetesSandboxDriver } from '../activities/sandbox/k8s';
import { proxyUrlWithCredentials } from '../activities/sandbox/k8s-egress';
import { podName } from '../activities/sandbox/k8s-objects';
import type { Logger } from '../workers/log';
import { startOrigin, type Origin } from './support/egress-servers';
import { tempDir } from './support/git-fixture';
import { kubeToolsBinDir, startKubeCluster, type KubeCluster } from './support/kube-cluster';
import { applyManifests } from './support/kube-manifests';

const NS = 'agent-sandboxes';
const SECRET = crypto.randomBytes(32).toString('hex');
const PROXY_LABELS = { 'app.kubernetes.io/name': 'egress-proxy' };
/** Bounds each curl in a pod, so a refusal that hangs fails the test rather than stalling it. */
const CURL = 'curl -sS --max-time 5';

let root: string;
let cluster: KubeCluster;
let admin: k8s.KubeConfig;
let worker: k8s.KubeConfig;
let origin: Origin;
let proxy: EgressProxy;
const servers: net.Server[] = [];
let proxyPort: number;
let reportUrl: string;
let counter = 0;
/** Every line the drivers and the proxy logged, with its attributes. */
const logged: string[] = [];
const log: Logger = {
  debug: (m, a) => void logged.push(`${m} ${JSON.stringify(a)}`),
  info: (m, a) => void logged.push(`${m} ${JSON.stringify(a)}`),
  warn: (m, a) => void logged.push(`${m} ${JSON.stringify(a)}`),
  error: (m, a) => void logged.push(`${m} ${JSON.stringify(a)}`),
};

async function listen(server: net.Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

function makeDriver(egress: { reportUrl?: string; reportTimeoutMs?: number } = {}): KubernetesSandboxDriver {
  const n = ++counter;
  return new KubernetesSandboxDriver({
    kubeConfig: worker,
    namespace: NS,
    image: 'debian:bookworm-slim',
    log,
    // kwok runs commands on this host, so the pod's paths must be private directories here.
    workspacePath: path.join(cluster.execWorkDir, `egress-ws-${n}`),
    tmpPath: path.join(cluster.execWorkDir, `egress-tmp-${n}`),
    egress: { proxy: { url: `http://127.0.0.1:${proxyPort}`, namespace: 'agent-inbox', podLabels: PROXY_LABELS, port: proxyPort }, secret: SECRET, reportUrl, ...egress },
  });
}

/** A running pod for task `id` around a fresh working copy. */
async function pod(id: string, driver = makeDriver(), egressAllowlist: string[] = []): Promise<{ driver: KubernetesSandboxDriver; handle: SandboxHandle }> {
  const hostWorkdir = path.join(root, 'work', id);
  fs.mkdirSync(hostWorkdir, { recursive: true });
  fs.writeFileSync(path.join(hostWorkdir, 'README.md'), '# demo\n');
  return { driver, handle: await driver.provision({ id, hostWorkdir, egressAllowlist }) };
}

function run(t: { driver: KubernetesSandboxDriver; handle: SandboxHandle }, command: string, egress?: EgressGrant) {
  return t.driver.exec(t.handle, command, { timeoutMs: 20_000, maxOutputBytes: 64 * 1024, ...(egress ? { egress } : {}) });
}

/** Files under `dir` holding `needle` (etcd's data and every control-plane log included). */
function filesHolding(dir: string, needle: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const file = path.join(e.parentPath, e.name);
    if (fs.readFileSync(file).includes(needle)) out.push(file);
  }
  return out;
}

describe('Kubernetes pod driver: egress through the cluster proxy', () => {
  before(async () => {
    const binDir = await kubeToolsBinDir();
    assert.ok(binDir, 'kube-apiserver, etcd and kwok are not built: run `bash k8s/tools/build.sh` (or `npm run setup:test`)');
    root = tempDir('k8s-egress-');
    cluster = await startKubeCluster({ dir: path.join(root, 'cluster'), binDir });
    admin = new k8s.KubeConfig();
    admin.loadFromFile(cluster.kubeconfigPath);
    await applyManifests(admin, ['namespace.yaml', 'runtimeclass.yaml', 'rbac.yaml']);
    worker = new k8s.KubeConfig();
    worker.loadFromFile(await cluster.kubeconfigFor('agent-inbox', 'agent-inbox-worker'));
    origin = await startOrigin();
    // The cluster's proxy as egress-proxy-main runs it: one shared listener by token, and its report port.
    proxy = new EgressProxy({ hosts: { 'registry.test': [`127.0.0.1:${origin.port}`], 'other.test': [`127.0.0.1:${origin.port}`] }, log });
    const shared = net.createServer();
    proxyPort = await listen(shared);
    proxy.serveShared(shared, identifyByToken(proxy, SECRET));
    reportUrl = `http://127.0.0.1:${await listen(createEgressAdmin(proxy, SECRET, log))}`;
  });

  after(async () => {
    proxy?.stop();
    for (const s of servers) s.close();
    await origin?.close();
    await cluster?.stop();
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it('lets a command reach the host it was granted, refuses another, and returns the report; its token is nowhere but in its environment', async () => {
    const t = await pod('kegress-reach');
    const r = await run(t, `${CURL} http://registry.test:${origin.port}/hello; ${CURL} -o /dev/null -w '%{http_code}\\n' http://other.test:${origin.port}/hello`, { allow: ['registry.test'], step: 'step 1' });
    assert.equal(r.exitCode, 0, r.output);
    assert.equal(r.output, 'hello from origin\n403\n');
    assert.equal(r.egress?.allowed, 1);
    assert.deepEqual(r.egress?.blocked.map((b) => [b.host, b.port, b.step, b.reason]), [['other.test', origin.port, 'step 1', "not in this task's allowlist"]]);
    assert.deepEqual(origin.requests.map((q) => q.host), [`registry.test:${origin.port}`], 'the refused name never reached the server');

    // Where the token is: the command's environment. Not its script's command line (the exec request's URI).
    const seen = await run(t, 'printenv http_proxy; echo; tr "\\0\\n" "  " < /proc/$PPID/cmdline', { allow: ['registry.test'], step: 'step 2' });
    const [url, , cmdline] = seen.output.split('\n');
    const token = decodeURIComponent(new URL(url!).password);
    assert.equal(new URL(url!).username, 'kegress-reach');
    assert.ok(token.length > 40, url);
    assert.match(cmdline!, /setsid/, 'the parent is the exec\'d script');
    assert.ok(!cmdline!.includes(token), 'the token is not on the exec\'s command line');
    assert.deepEqual(filesHolding(cluster.logDir, token), [], 'no control-plane log holds the token');
    assert.deepEqual(filesHolding(path.join(root, 'cluster'), token).filter((f) => !f.startsWith(cluster.execWorkDir)), [], 'nor etcd');
    assert.ok(!logged.some((l) => l.includes(token) || l.includes(SECRET)), 'no log line holds the token or the secret');
    const spec = await admin.makeApiClient(k8s.CoreV1Api).readNamespacedPod({ name: podName('kegress-reach'), namespace: NS });
    assert.deepEqual(spec.spec!.containers[0]!.env!.filter((e) => /proxy/i.test(e.name)), [], 'no proxy variable in the pod spec');

    // Without a grant the command gets no proxy environment and its result no report.
    // (Only the variables the driver sets: kwok runs commands with the test runner's environment, which npm fills with npm_config_*.)
    const plain = await run(t, "env | grep -ciE '^(https?|all|no)_proxy=|^PIP_PROXY='; true");
    assert.equal(plain.output, '0\n');
    assert.equal(plain.egress, undefined);
    await t.driver.teardown(t.handle);
    assert.ok(!logged.some((l) => l.startsWith('could not release the task at the egress proxy')), 'teardown told the proxy');
  });

  it('refuses everything to a command granted nothing, then widens the deny-all policy of the running pod to the proxy and DNS only on a grant', async () => {
    const t = await pod('kegress-policy');
    const net_ = admin.makeApiClient(k8s.NetworkingV1Api);
    const core = admin.makeApiClient(k8s.CoreV1Api);
    const name = podName('kegress-policy');
    const before_ = await net_.readNamespacedNetworkPolicy({ name, namespace: NS });
    assert.deepEqual(before_.spec?.egress ?? [], [], 'provisioned without an allowlist: no egress at all');
    const uid = (await core.readNamespacedPod({ name, namespace: NS })).metadata!.uid;

    const none = await run(t, `${CURL} -o /dev/null -w '%{http_code}\\n' http://registry.test:${origin.port}/hello`, { allow: [], step: 'step 1' });
    assert.equal(none.output, '403\n');
    assert.deepEqual(none.egress?.blocked.map((b) => [b.host, b.step]), [['registry.test', 'step 1']]);
    assert.equal(none.egress?.allowed, 0);
    assert.deepEqual((await net_.readNamespacedNetworkPolicy({ name, namespace: NS })).spec?.egress ?? [], [], 'an empty grant opens nothing');

    const granted = await run(t, `${CURL} http://registry.test:${origin.port}/hello`, { allow: ['registry.test'], step: 'step 2' });
    assert.equal(granted.output, 'hello from origin\n');
    const policy = await net_.readNamespacedNetworkPolicy({ name, namespace: NS });
    assert.deepEqual(policy.spec?.policyTypes, ['Ingress', 'Egress']);
    assert.deepEqual(policy.spec?.ingress ?? [], []);
    const rules = policy.spec!.egress!.map((r) => ({
      to: r.to!.map((p) => ({ ns: p.namespaceSelector?.matchLabels ?? {}, pods: p.podSelector?.matchLabels, ip: p.ipBlock })),
      ports: r.ports!.map((x) => `${x.protocol}/${x.port}`),
    }));
    assert.deepEqual(rules, [
      { to: [{ ns: {}, pods: { 'k8s-app': 'kube-dns' }, ip: undefined }], ports: ['UDP/53', 'TCP/53'] },
      { to: [{ ns: { 'kubernetes.io/metadata.name': 'agent-inbox' }, pods: PROXY_LABELS, ip: undefined }], ports: [`TCP/${proxyPort}`] },
    ]);
    assert.equal(policy.metadata?.ownerReferences?.[0]?.uid, uid, 'still owned by its pod');
    const after_ = await core.readNamespacedPod({ name, namespace: NS });
    assert.equal(after_.metadata!.uid, uid, 'the same pod: not restarted');
    assert.equal(after_.status?.phase, 'Running');
    await t.driver.teardown(t.handle);
  });

  it('lets a token act only for the task it names, within that task\'s grant, and refuses an expired one', async () => {
    const a = await pod('kegress-a');
    const b = await pod('kegress-b');
    const leak = await run(a, 'printenv http_proxy', { allow: ['registry.test'], step: 'a step 1' });
    const aUrl = leak.output.trim();
    const aToken = decodeURIComponent(new URL(aUrl).password);
    const hostPort = `127.0.0.1:${proxyPort}`;
    const expired = signEgressToken(SECRET, { task: 'kegress-b', allow: ['registry.test'], step: 'b step 1', iat: Date.now(), exp: Math.floor(Date.now() / 1000) - 1 });
    const code = (proxyUrl: string, host: string) => `${CURL} -x '${proxyUrl}' -o /dev/null -w '%{http_code}\\n' http://${host}:${origin.port}/hello`;
    // B, granted other.test only, presents A's credentials, A's token under its own name, and an expired token of its own.
    const r = await run(
      b,
      [
        code(aUrl, 'registry.test'),
        code(aUrl, 'other.test'),
        code(proxyUrlWithCredentials(`http://${hostPort}`, 'kegress-b', aToken), 'registry.test'),
        code(proxyUrlWithCredentials(`http://${hostPort}`, 'kegress-b', expired), 'registry.test'),
      ].join('; '),
      { allow: ['other.test'], step: 'b step 1' },
    );
    assert.deepEqual(r.output.trim().split('\n'), ['200', '403', '407', '407'], 'A\'s grant applies to A\'s token, B\'s wider one does not; a mismatched or expired token identifies no one');
    assert.deepEqual(r.egress, { allowed: 0, blocked: [], blocked_count: 0, bytes_sent: 0, bytes_received: 0 }, 'nothing is attributed to B');
    const aReport = (await run(a, 'true', { allow: ['registry.test'], step: 'a step 2' })).egress;
    assert.equal(aReport?.allowed, 1, 'what A\'s token did counts for A');
    assert.deepEqual(aReport?.blocked.map((x) => [x.host, x.step]), [['other.test', 'a step 1']]);
    await a.driver.teardown(a.handle);
    await b.driver.teardown(b.handle);
  });

  it('applies each command\'s own grant, even when an earlier command\'s token outlives it (a longer timeout)', async () => {
    const t = await pod('kegress-phases');
    const reach = `${CURL} -o /dev/null -w '%{http_code}\\n' http://registry.test:${origin.port}/hello`;
    // A setup-like command with a long timeout, then a planner-like one granted nothing with a short one.
    const setup = await t.driver.exec(t.handle, reach, { timeoutMs: 600_000, maxOutputBytes: 1024, egress: { allow: ['registry.test'], step: 'setup 1' } });
    assert.equal(setup.output, '200\n');
    const planner = await t.driver.exec(t.handle, reach, { timeoutMs: 10_000, maxOutputBytes: 1024, egress: { allow: [], step: 'step 1' } });
    assert.equal(planner.output, '403\n', 'the setup grant does not carry over into the next command');
    assert.deepEqual(planner.egress?.blocked.map((b) => [b.host, b.step]), [['registry.test', 'step 1']]);
    await t.driver.teardown(t.handle);
  });

  it('keeps a command\'s result when its report cannot be read within the bound, and says so in the log', async () => {
    // A report port that accepts and never answers.
    const mute = net.createServer((s) => s.on('error', () => undefined));
    const port = await listen(mute);
    const t = await pod('kegress-mute', makeDriver({ reportUrl: `http://127.0.0.1:${port}`, reportTimeoutMs: 300 }));
    const r = await run(t, 'echo ran; exit 3', { allow: ['registry.test'], step: 'step 1' });
    assert.equal(r.exitCode, 3);
    assert.equal(r.output, 'ran\n');
    assert.equal(r.egress, undefined);
    assert.ok(logged.some((l) => l.startsWith('could not read the egress report of a command') && l.includes('timed out')));
    await t.driver.teardown(t.handle);
  });
});

/**
 * Networking of gVisor sandboxes, on real runsc and real network namespaces: a sandbox whose task may
 * reach some domain reaches the egress proxy's listener and nothing else; one without has no network.
 * The proxy here is a stand-in that answers every request with a fixed response and records what it saw;
 * the proxy's own rules are tested with the proxy.
 *
 * Needs root, runsc (`npm run setup`) and iproute2.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { EgressGrant, EgressProxyPort, EgressReport } from '../activities/egress/types';
import { clone } from '../activities/git/workspace';
import type { ExecOptions, SandboxHandle } from '../activities/sandbox/driver';
import { GvisorSandboxDriver } from '../activities/sandbox/gvisor';
import { NETNS_DIR, PROXY_ADDRESS, PROXY_PORT, SandboxNetworks } from '../activities/sandbox/gvisor-net';
import type { Logger } from '../workers/log';
import { resolveRunsc } from '../workers/sandbox';
import { makeOriginRepo, tempDir } from './support/git-fixture';
import { PY_CONNECT } from './support/sandbox-probe';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const grant = (...allow: string[]): EgressGrant => ({ allow, step: 'step 1' });
const run = (egress?: EgressGrant): ExecOptions => ({ timeoutMs: 60_000, maxOutputBytes: 64 * 1024, ...(egress ? { egress } : {}) });
const STAND_IN_BODY = 'answered by the stand-in proxy';

/** What the stand-in saw of one request: its request line and the client's User-Agent. */
interface SeenRequest {
  line: string;
  agent: string;
  /** Whether the task had a grant when the request came. */
  granted: boolean;
}

/** An `EgressProxyPort` that answers every request on a task's listener with a fixed response and records it. */
class StandInProxy implements EgressProxyPort {
  readonly servers = new Map<string, net.Server>();
  readonly seen = new Map<string, SeenRequest[]>();
  private readonly grants = new Map<string, EgressGrant | null>();
  private readonly counts = new Map<string, { allowed: number; sent: number }>();

  serveTask(taskId: string, server: net.Server): void {
    this.servers.set(taskId, server);
    server.on('connection', (sock) => {
      let head = '';
      sock.on('error', () => undefined);
      sock.on('data', (chunk: Buffer) => {
        const c = this.countsOf(taskId);
        c.sent += chunk.length;
        if (head.includes('\r\n\r\n')) return;
        head += chunk.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        const lines = head.split('\r\n');
        const granted = (this.grants.get(taskId)?.allow.length ?? 0) > 0;
        (this.seen.get(taskId) ?? this.seen.set(taskId, []).get(taskId)!).push({
          line: lines[0]!,
          agent: lines.find((l) => /^user-agent:/i.test(l))?.slice('user-agent:'.length).trim() ?? '',
          granted,
        });
        if (granted) c.allowed++;
        sock.end(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${STAND_IN_BODY.length + 1}\r\nConnection: close\r\n\r\n${STAND_IN_BODY}\n`);
      });
    });
  }

  serves(taskId: string): boolean {
    return this.servers.has(taskId);
  }

  setGrant(taskId: string, g: EgressGrant | null): void {
    this.grants.set(taskId, g);
  }

  take(taskId: string): EgressReport {
    const c = this.countsOf(taskId);
    this.counts.delete(taskId);
    return { allowed: c.allowed, blocked: [], blocked_count: 0, bytes_sent: c.sent, bytes_received: 0 };
  }

  release(taskId: string): void {
    this.servers.get(taskId)?.close();
    this.servers.delete(taskId);
    this.grants.delete(taskId);
  }

  /** The listeners die with the process that held them (a worker killed). */
  die(): void {
    for (const s of this.servers.values()) s.close();
    this.servers.clear();
  }

  private countsOf(taskId: string): { allowed: number; sent: number } {
    return this.counts.get(taskId) ?? this.counts.set(taskId, { allowed: 0, sent: 0 }).get(taskId)!;
  }
}

/** Connects from inside the sandbox to each `host:port` argument and prints `host:port result`; tries a route and a raw socket too. */
const PROBE = `${PY_CONNECT}
import subprocess, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(':', 1)
    print(target, connect(host, port, 3))
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    print('raw opened')
except OSError as e:
    print('raw errno-%d' % e.errno)
rc = subprocess.run(['ip', 'route', 'add', 'default', 'via', '${PROXY_ADDRESS}'], capture_output=True).returncode
print('route-add', 'failed' if rc != 0 else 'added')
`;

let runsc: string;
let root: string;
let origin: string;
let proxy: StandInProxy;
let driver: GvisorSandboxDriver;
let counter = 0;
const opened: SandboxHandle[] = [];

function driverOver(egress: EgressProxyPort): GvisorSandboxDriver {
  return new GvisorSandboxDriver({ root: path.join(root, 'sandboxes'), runsc, log: quiet, egress, limits: { memoryMb: 512, processesPerCommand: 64, tmpMb: 64 } });
}

async function provision(egressAllowlist: string[]): Promise<SandboxHandle> {
  const id = `gnet-${process.pid}-${++counter}`;
  const dir = path.join(root, 'workspaces', id);
  await clone(origin, 'main', dir);
  const handle = await driver.provision({ id, hostWorkdir: dir, egressAllowlist });
  opened.push(handle);
  return handle;
}

function namespacesOf(id: string): string[] {
  const names = new SandboxNetworks({ root: path.join(root, 'sandboxes'), log: quiet }).names(id);
  return Object.values(names).filter((n) => fs.existsSync(path.join(NETNS_DIR, n)));
}

/** Addresses the host answers on: every interface's IPv4 address, the source of its default route, loopback. */
function hostAddresses(): string[] {
  const all = Object.values(os.networkInterfaces())
    .flat()
    .filter((a) => a !== undefined && a.family === 'IPv4')
    .map((a) => a!.address);
  const viaDefault = /src (\S+)/.exec(execFileSync('ip', ['route', 'get', '1.1.1.1'], { encoding: 'utf8' }))?.[1];
  return [...new Set([...all, ...(viaDefault ? [viaDefault] : []), '127.0.0.1'])];
}

describe('gVisor sandbox networking through the egress proxy', () => {
  before(async () => {
    const found = await resolveRunsc();
    assert.ok(found, 'runsc is not installed: run `npm run setup` (bash scripts/install-runsc.sh)');
    runsc = found;
    root = tempDir('gvisor-net-');
    origin = makeOriginRepo(root, { 'README.md': '# demo\n' });
    proxy = new StandInProxy();
    driver = driverOver(proxy);
  });

  after(async () => {
    for (const h of opened) await driver.teardown(h).catch(() => undefined);
    await driver.releaseHost();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('sends curl, git, pip and npm through the proxy when the task has an allowlist, and reports what the proxy saw', async () => {
    const sandbox = await provision(['anything.test']);
    const listener = proxy.servers.get(sandbox.id);
    // Bound to the proxy side's address, which exists nowhere in the host's namespace.
    assert.deepEqual(listener && { ...(listener.address() as net.AddressInfo), family: undefined }, { address: PROXY_ADDRESS, port: PROXY_PORT, family: undefined });
    const res = await driver.exec(
      sandbox,
      [
        'curl -sS http://anything.test/',
        'git ls-remote http://anything.test/repo.git >/dev/null 2>&1',
        'python3 -m pip download -q --no-deps --retries 0 --trusted-host anything.test -d /tmp/pip --index-url http://anything.test/simple/ left-pad >/dev/null 2>&1',
        'npm view left-pad --registry http://anything.test/ --fetch-retries 0 >/dev/null 2>&1',
        'echo done',
      ].join('; '),
      run(grant('anything.test')),
    );
    assert.equal(res.exitCode, 0, res.output);
    assert.match(res.output, new RegExp(`^${STAND_IN_BODY}\ndone\n$`));
    const seen = proxy.seen.get(sandbox.id) ?? [];
    const by = (tool: RegExp): SeenRequest | undefined => seen.find((s) => tool.test(s.agent));
    assert.equal(by(/^curl\//)?.line, 'GET http://anything.test/ HTTP/1.1');
    assert.match(by(/^git\//)?.line ?? '', /^GET http:\/\/anything\.test\/repo\.git\/info\/refs\?service=git-upload-pack /);
    assert.match(by(/^pip\//)?.line ?? '', /^GET http:\/\/anything\.test\/simple\/left-pad\/ /);
    assert.match(by(/^npm\//)?.line ?? '', /^GET http:\/\/anything\.test\/left-pad /);
    assert.ok(seen.every((s) => s.granted), JSON.stringify(seen));
    assert.equal(res.egress?.allowed, seen.length);
    assert.ok((res.egress?.bytes_sent ?? 0) > 0);

    // Between commands the task is granted nothing; the next command without a grant is denied by the proxy.
    const denied = await driver.exec(sandbox, 'curl -sS http://anything.test/ >/dev/null; echo rc=$?', run());
    assert.equal(proxy.seen.get(sandbox.id)!.at(-1)!.granted, false);
    assert.equal(denied.egress?.allowed, 0);
  });

  it('reaches nothing but the listener, however a command bypasses the proxy', async () => {
    const hostServer = net.createServer((s) => {
      s.on('error', () => undefined);
      s.end('the host answered\n');
    });
    let hostConnections = 0;
    hostServer.on('connection', () => hostConnections++);
    await new Promise<void>((r) => hostServer.listen(0, '0.0.0.0', r));
    const port = (hostServer.address() as net.AddressInfo).port;
    try {
      const sandbox = await provision(['anything.test']);
      await driver.writeFile(sandbox, 'probe.py', PROBE);
      const targets = [`${PROXY_ADDRESS}:${PROXY_PORT}`, `${PROXY_ADDRESS}:${port}`, `${PROXY_ADDRESS}:22`, ...hostAddresses().map((a) => `${a}:${port}`), `192.0.2.1:80`];
      const res = await driver.exec(sandbox, `python3 probe.py ${targets.join(' ')}; curl -sS --noproxy '*' -m 3 http://${os.hostname()}:${port}/ || echo curl-failed`, run(grant('anything.test')));
      const results = Object.fromEntries(res.output.trim().split('\n').filter((l) => / (connected|timeout|errno-\d+|failed|added|opened)$/.test(l)).map((l) => l.split(' ') as [string, string]));
      assert.equal(results[`${PROXY_ADDRESS}:${PROXY_PORT}`], 'connected', res.output);
      for (const t of targets.slice(1)) assert.notEqual(results[t], 'connected', `${t} answered: ${res.output}`);
      assert.notEqual(results.raw, 'opened');
      assert.equal(results['route-add'], 'failed');
      assert.match(res.output, /curl-failed/);
      assert.equal(hostConnections, 0);

      // Had a route been added anyway, packets would land in the proxy side: only loopback and the pair,
      // one route, no forwarding, and from there the host is unreachable.
      const { proxy: proxyNs } = new SandboxNetworks({ root: path.join(root, 'sandboxes'), log: quiet }).names(sandbox.id);
      const links = execFileSync('ip', ['-n', proxyNs, '-o', 'link', 'show'], { encoding: 'utf8' });
      assert.deepEqual([...links.matchAll(/^\d+: ([^:@]+)/gm)].map((m) => m[1]).sort(), ['lo', 'veth0']);
      assert.equal(execFileSync('ip', ['-n', proxyNs, 'route', 'show'], { encoding: 'utf8' }).trim().split('\n').length, 1);
      assert.equal(execFileSync('ip', ['netns', 'exec', proxyNs, 'cat', '/proc/sys/net/ipv4/ip_forward'], { encoding: 'utf8' }).trim(), '0');
      const fromProxySide = spawnSync('ip', ['netns', 'exec', proxyNs, 'curl', '-sS', '-m', '3', `http://${hostAddresses()[0]}:${port}/`], { encoding: 'utf8' });
      assert.notEqual(fromProxySide.status, 0, fromProxySide.stdout);
      assert.match(fromProxySide.stderr, /unreachable|Couldn't connect|Failed to connect/i);
    } finally {
      hostServer.close();
    }
    assert.equal(hostConnections, 0);
  });

  it('gives a task without an allowlist no network, until a command is granted egress', async () => {
    const sandbox = await provision([]);
    assert.deepEqual(namespacesOf(sandbox.id), []);
    const probe = `python3 -c "import socket; print(sorted(n for _, n in socket.if_nameindex()))"; curl -sS -m 3 --noproxy '*' http://${PROXY_ADDRESS}:${PROXY_PORT}/ || echo unreachable; printenv HTTP_PROXY || echo no-proxy-env`;
    const none = await driver.exec(sandbox, probe, run());
    assert.match(none.output, /\['lo'\]\n/);
    assert.match(none.output, /unreachable\nno-proxy-env\n$/);
    assert.equal(none.egress, undefined);
    assert.equal(proxy.serves(sandbox.id), false);

    // A grant restarts it with networking around the same working copy, and says so.
    await driver.exec(sandbox, 'echo kept > kept.txt', run());
    const granted = await driver.exec(sandbox, 'cat kept.txt; curl -sS http://anything.test/', run(grant('anything.test')));
    assert.equal(granted.exitCode, 0, granted.output);
    assert.match(granted.output, new RegExp(`^kept\n${STAND_IN_BODY}\n`));
    assert.match(granted.output, /restarted with networking/);
    assert.equal(namespacesOf(sandbox.id).length, 2);
  });

  it('makes the listener again for a restarted worker, and leaves no namespace after teardown', async () => {
    const sandbox = await provision(['anything.test']);
    assert.equal(namespacesOf(sandbox.id).length, 2);
    // The worker dies: its listeners with it; the sandbox and its namespaces live on.
    proxy.die();
    const next = new StandInProxy();
    const restarted = driverOver(next);
    const again = await restarted.provision({ id: sandbox.id, hostWorkdir: sandbox.hostWorkdir, egressAllowlist: ['anything.test'] });
    const res = await restarted.exec(again, 'curl -sS http://anything.test/', run(grant('anything.test')));
    assert.equal(res.output, `${STAND_IN_BODY}\n`);
    assert.equal(next.seen.get(sandbox.id)?.length, 1);

    await restarted.teardown(again);
    assert.deepEqual(namespacesOf(sandbox.id), []);
    assert.equal(next.serves(sandbox.id), false);
    assert.ok(!(await restarted.list()).includes(sandbox.id));
    // Namespaces left by a worker that died mid-teardown are listed, and the reaper's teardown removes them.
    const other = await provision(['anything.test']);
    execFileSync(runsc, ['--root', path.join(root, 'sandboxes', '.runsc'), 'delete', '--force', `${other.id}+`]);
    fs.rmSync(path.join(root, 'sandboxes', other.id), { recursive: true, force: true });
    assert.ok((await restarted.list()).includes(other.id));
    await restarted.teardown(other);
    assert.deepEqual(namespacesOf(other.id), []);
    assert.ok(!(await restarted.list()).includes(other.id));
  });
});

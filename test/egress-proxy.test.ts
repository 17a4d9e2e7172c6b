/**
 * The egress proxy on loopback with curl as the client: what a task's allowlist admits, and the ways
 * around it a hostile sandbox would try (another name for the same server, names resolving to
 * private addresses, DNS rebinding, a TLS name other than the tunnel's, a fronted Host header).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { parseClientHello } from '../activities/egress/client-hello';
import { EgressProxy, MAX_CONNECTIONS_PER_TASK } from '../activities/egress/proxy';
import { MAX_BLOCKED_LISTED } from '../activities/egress/ledger';
import { identifyByToken } from '../activities/egress/shared';
import { signEgressToken, verifyEgressToken } from '../activities/egress/token';
import type { Lookup } from '../activities/egress/destination';
import type { EgressTimeouts } from '../activities/egress/relay';
import { refusedAddress } from '../activities/egress/addresses';
import { createLogger } from '../workers/log';
import { loadEgressProxyConfig } from '../workers/egress-proxy-config';
import { tempDir } from './support/git-fixture';
import { call, freePort } from './support/http';
import { curl, selfSignedCert, startOrigin, startTlsOrigin, type Origin } from './support/egress-servers';

const log = createLogger({ level: 'error', component: 'egress-test' });
let web: Origin;
let secure: Origin;
let certPath: string;
let cert: { key: string; cert: string };
let n = 0;
const listeners: net.Server[] = [];

before(async () => {
  const dir = tempDir('egress-proxy');
  ({ certPath, ...cert } = selfSignedCert(dir, ['registry.test', 'other.test']));
  web = await startOrigin();
  secure = await startTlsOrigin(cert);
});

after(async () => {
  for (const l of listeners) l.close();
  await web.close();
  await secure.close();
});

/** The names the operator maps to the loopback origins (only the first is ever granted), and `self.test` to the proxy's own `listener` port. */
function hosts(listener?: number): Record<string, string[]> {
  const origins = [`127.0.0.1:${web.port}`, `127.0.0.1:${secure.port}`];
  return { 'registry.test': origins, 'other.test': origins, ...(listener ? { 'self.test': [`127.0.0.1:${listener}`] } : {}) };
}

/** A proxy serving a fresh task on its own loopback listener, granted `allow`. */
async function served(allow: string[] | null, opts: { lookup?: Lookup; timeouts?: Partial<EgressTimeouts> } = {}) {
  const task = `task-${++n}`;
  const server = net.createServer();
  listeners.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy = new EgressProxy({ hosts: hosts((server.address() as net.AddressInfo).port), log, ...opts });
  proxy.serveTask(task, server);
  if (allow) proxy.setGrant(task, { allow, step: 'step 1' });
  const port = (server.address() as net.AddressInfo).port;
  return { proxy, task, port, url: `http://127.0.0.1:${port}` };
}

/** Open a CONNECT tunnel by hand and wait for the proxy's status line. */
function rawConnect(proxyPort: number, target: string): Promise<{ sock: net.Socket; status: string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(proxyPort, '127.0.0.1', () => sock.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    let got = '';
    const onData = (c: Buffer) => {
      got += c.toString('latin1');
      if (!got.includes('\r\n\r\n')) return;
      sock.off('data', onData);
      resolve({ sock, status: got.split('\r\n')[0]! });
    };
    sock.on('data', onData);
    sock.on('error', reject);
  });
}

const closed = (sock: net.Socket, ms = 2_000): Promise<boolean> =>
  new Promise((resolve) => {
    if (sock.destroyed) return resolve(true);
    const t = setTimeout(() => resolve(false), ms);
    sock.once('close', () => (clearTimeout(t), resolve(true)));
  });

describe('egress proxy: what a grant admits', () => {
  it('fetches an allowed name over plain http through the forward proxy', async () => {
    const { url, proxy, task } = await served(['registry.test']);
    const r = await curl(['-x', url, `http://registry.test:${web.port}/hello`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello from origin\n');
    assert.equal(web.requests.at(-1)!.host, `registry.test:${web.port}`);
    assert.equal(proxy.take(task).allowed, 1);
  });

  it('fetches an allowed name over https through a CONNECT tunnel', async () => {
    const { url } = await served(['registry.test']);
    const r = await curl(['-x', url, '--cacert', certPath, `https://registry.test:${secure.port}/hello`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello from origin\n');
  });

  it('serves several requests of a keep-alive client, checking each', async () => {
    const { url, proxy, task } = await served(['registry.test']);
    const r = await curl(['-x', url, `http://registry.test:${web.port}/hello`, '--next', '-x', url, `http://other.test:${web.port}/hello`]);
    assert.match(r.stdout, /^hello from origin\negress to other\.test:\d+ refused/);
    const report = proxy.take(task);
    assert.equal(report.allowed, 1);
    assert.equal(report.blocked_count, 1);
  });
});

describe('egress proxy: refusals', () => {
  it('refuses a second name for the same server with a clear message, and the server never sees it', async () => {
    const { url, proxy, task } = await served(['registry.test']);
    const before = { requests: web.requests.length, connections: web.connections };
    const r = await curl(['-x', url, '-i', `http://other.test:${web.port}/hello`]);
    assert.match(r.stdout, /^HTTP\/1\.1 403/);
    assert.match(r.stdout, /x-agent-egress: refused/i);
    assert.match(r.stdout, new RegExp(`egress to other\\.test:${web.port} refused: not in this task's allowlist \\(ask a human: request_network\\)`));
    const tlsBefore = secure.connections;
    const s = await curl(['-x', url, '--cacert', certPath, `https://other.test:${secure.port}/hello`]);
    assert.notEqual(s.code, 0);
    assert.match(s.stderr, /CONNECT tunnel failed, response 403/);
    assert.deepEqual({ requests: web.requests.length, connections: web.connections }, before);
    assert.equal(secure.connections, tlsBefore);
    const report = proxy.take(task);
    assert.deepEqual(
      report.blocked.map((b) => [b.host, b.port, b.step, b.reason, b.count]),
      [
        ['other.test', web.port, 'step 1', "not in this task's allowlist", 1],
        ['other.test', secure.port, 'step 1', "not in this task's allowlist", 1],
      ],
    );
  });

  it('denies everything to a task with no grant, and a grant of null', async () => {
    const { url, proxy, task } = await served(null);
    const r = await curl(['-x', url, `http://registry.test:${web.port}/hello`]);
    assert.match(r.stdout, /refused: this task has no network access/);
    proxy.setGrant(task, { allow: ['registry.test'], step: 's' });
    assert.equal((await curl(['-x', url, `http://registry.test:${web.port}/hello`])).stdout, 'hello from origin\n');
    proxy.setGrant(task, null);
    assert.match((await curl(['-x', url, `http://registry.test:${web.port}/hello`])).stdout, /no network access/);
  });

  it('refuses names that resolve to loopback, private, CGNAT, metadata or mapped addresses the operator did not name', async () => {
    const answers: Record<string, string[]> = {
      'loop.example': ['127.0.0.1'],
      'ten.example': ['10.1.2.3'],
      'cgnat.example': ['100.64.0.9'],
      'meta.example': ['169.254.169.254'],
      'mapped.example': ['::ffff:127.0.0.1'],
      'meta6.example': ['fd00:ec2::254'],
    };
    const lookup: Lookup = async (h) => answers[h] ?? [];
    const { url, proxy, task } = await served(Object.keys(answers), { lookup });
    const before = web.requests.length;
    for (const [name, [addr]] of Object.entries(answers)) {
      const r = await curl(['-x', url, `http://${name}:${web.port}/hello`]);
      assert.match(r.stdout, new RegExp(`egress to ${name.replace('.', '\\.')}:${web.port} refused: resolves to an? .*address \\(${addr!.replace(/\./g, '\\.')}\\)`));
    }
    const s = await curl(['-x', url, '-k', `https://loop.example:${secure.port}/`]);
    assert.match(s.stderr, /CONNECT tunnel failed, response 403/);
    assert.equal(web.requests.length, before);
    const reasons = proxy.take(task).blocked.map((b) => b.reason);
    assert.ok(reasons.includes('resolves to a cloud metadata address (169.254.169.254)'), reasons.join('; '));
    assert.ok(reasons.includes('resolves to a loopback address (::ffff:127.0.0.1)'), reasons.join('; '));
  });

  it('refuses a name one of whose addresses is private, even when another is public', async () => {
    const { url } = await served(['mixed.example'], { lookup: async () => ['93.184.215.14', '127.0.0.1'] });
    const r = await curl(['-x', url, `http://mixed.example:${web.port}/hello`]);
    assert.match(r.stdout, /refused: resolves to a loopback address \(127\.0\.0\.1\)/);
  });

  it('resolves once and connects to the address it checked, so rebinding to loopback reaches nothing', async () => {
    let calls = 0;
    // Public on the first answer (the check), loopback on any later one (the attacker's hope).
    const lookup: Lookup = async () => (calls++ === 0 ? ['93.184.215.14'] : ['127.0.0.1']);
    const { url } = await served(['rebind.example'], { lookup, timeouts: { connect: 300 } });
    const before = { requests: web.requests.length, connections: web.connections };
    const r = await curl(['-x', url, '-i', `http://rebind.example:${web.port}/hello`]);
    assert.match(r.stdout, /^HTTP\/1\.1 502/);
    assert.equal(calls, 1);
    assert.deepEqual({ requests: web.requests.length, connections: web.connections }, before);
  });

  it("refuses a tunnel into the proxy's own listener", async () => {
    const { url, port } = await served(['self.test']);
    const r = await curl(['-x', url, `http://self.test:${port}/`]);
    assert.match(r.stdout, /refused: the proxy's own listener/);
  });

  it('refuses a Host header naming another host than the URL (domain fronting)', async () => {
    const { url } = await served(['registry.test']);
    const before = web.requests.length;
    const r = await curl(['-x', url, '-i', '-H', 'Host: other.test', `http://registry.test:${web.port}/hello`]);
    assert.match(r.stdout, /^HTTP\/1\.1 403/);
    assert.match(r.stdout, /the Host header names another host \("other\.test": domain fronting\)/);
    assert.equal(web.requests.length, before);
  });

  it('closes a tunnel whose ClientHello names another server than the CONNECT host, before connecting', async () => {
    const { url, proxy, task } = await served(['registry.test']);
    const before = secure.connections;
    const r = await curl(['-x', url, '-k', '--connect-to', `other.test:${secure.port}:registry.test:${secure.port}`, `https://other.test:${secure.port}/hello`]);
    assert.notEqual(r.code, 0);
    assert.equal(secure.connections, before);
    const [b] = proxy.take(task).blocked;
    assert.equal(b!.host, 'registry.test');
    assert.equal(b!.reason, 'TLS name mismatch (SNI "other.test" in a tunnel to registry.test)');
  });

  it('closes a tunnel that carries no SNI or no TLS at all', async () => {
    const { port, proxy, task } = await served(['registry.test']);
    const before = secure.connections;
    const noSni = await rawConnect(port, `registry.test:${secure.port}`);
    assert.match(noSni.status, / 200 /);
    tls.connect({ socket: noSni.sock, rejectUnauthorized: false }).on('error', () => {});
    assert.ok(await closed(noSni.sock));
    const plain = await rawConnect(port, `registry.test:${secure.port}`);
    plain.sock.write('GET / HTTP/1.1\r\nHost: registry.test\r\n\r\n');
    assert.ok(await closed(plain.sock));
    assert.equal(secure.connections, before);
    assert.deepEqual(
      proxy.take(task).blocked.map((b) => b.reason),
      ['no SNI (the ClientHello names no server)', 'not TLS (the first record is not a TLS handshake)'],
    );
  });

  it('closes a client that dribbles its headers, and a tunnel that sends no ClientHello, when their time runs out', async () => {
    const { port, proxy, task } = await served(['registry.test'], { timeouts: { header: 300, clientHello: 300 } });
    const slow = net.connect(port, '127.0.0.1', () => slow.write(`GET http://registry.test:${web.port}/hello HTTP/1.1\r\n`));
    slow.on('error', () => {});
    const drip = setInterval(() => slow.writable && slow.write('X-A: b\r\n'), 50);
    const t0 = Date.now();
    assert.ok(await closed(slow, 2_000), 'the dribbling client was closed');
    clearInterval(drip);
    assert.ok(Date.now() - t0 < 1_000);
    const silent = await rawConnect(port, `registry.test:${secure.port}`);
    assert.match(silent.status, / 200 /);
    assert.ok(await closed(silent.sock, 2_000), 'the silent tunnel was closed');
    assert.deepEqual(proxy.take(task).blocked.map((b) => b.reason), ['no ClientHello in time']);
  });

  it('folds repeated refusals and bounds the list, while counting them all', async () => {
    const { port, proxy, task } = await served(['registry.test']);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const get = (host: string) =>
      new Promise<number>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: `http://${host}:${web.port}/`, headers: { host: `${host}:${web.port}` }, agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode!));
          })
          .on('error', reject);
      });
    for (let i = 0; i < 3; i++) assert.equal(await get('other.test'), 403);
    await Promise.all(Array.from({ length: MAX_BLOCKED_LISTED + 20 }, (_, i) => get(`h${i}.example`)));
    agent.destroy();
    const report = proxy.take(task);
    assert.equal(report.blocked_count, 3 + MAX_BLOCKED_LISTED + 20);
    assert.equal(report.blocked.length, MAX_BLOCKED_LISTED);
    assert.equal(report.blocked[0]!.count, 3);
    assert.equal(proxy.take(task).blocked_count, 0);
  });

  it('accepts no more than its connection limit from one task', async () => {
    const { port } = await served(['registry.test']);
    const socks = await Promise.all(
      Array.from({ length: MAX_CONNECTIONS_PER_TASK + 1 }, () => new Promise<net.Socket>((resolve) => { const s = net.connect(port, '127.0.0.1', () => resolve(s)); s.on('error', () => {}); })),
    );
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(socks.filter((s) => s.destroyed || s.readableEnded).length, 1);
    socks.forEach((s) => s.destroy());
  });
});

describe('egress proxy: grants change, counters', () => {
  it('ends an open tunnel when a narrowed grant no longer admits its host, and keeps it when it still does', async () => {
    const { port, proxy, task } = await served(['registry.test', 'other.test']);
    const { sock, status } = await rawConnect(port, `registry.test:${secure.port}`);
    assert.match(status, / 200 /);
    const t = tls.connect({ socket: sock, servername: 'registry.test', ca: cert.cert });
    await new Promise<void>((resolve, reject) => t.once('secureConnect', resolve).once('error', reject));
    proxy.setGrant(task, { allow: ['registry.test'], step: 'step 2' });
    assert.equal(await closed(t, 200), false);
    proxy.setGrant(task, { allow: ['other.test'], step: 'step 3' });
    assert.equal(await closed(t), true);
  });

  it('counts the bytes relayed both ways, for forwards and tunnels, and resets on take()', async () => {
    const { url, proxy, task } = await served(['registry.test']);
    const size = 300_000;
    const a = await curl(['-x', url, '-o', '/dev/null', `http://registry.test:${web.port}/bytes/${size}`]);
    const b = await curl(['-x', url, '-o', '/dev/null', '--cacert', certPath, `https://registry.test:${secure.port}/bytes/${size}`]);
    const c = await curl(['-x', url, '--data-binary', 'x=1', `http://registry.test:${web.port}/upload`]);
    assert.equal(a.code + b.code, 0, a.stderr + b.stderr);
    assert.match(c.stdout, /received 3 bytes/);
    const r = proxy.take(task);
    assert.equal(r.allowed, 3);
    assert.ok(r.bytes_received > 2 * size && r.bytes_received < 2 * size + 20_000, String(r.bytes_received));
    assert.ok(r.bytes_sent > 300 && r.bytes_sent < 20_000, String(r.bytes_sent));
    assert.deepEqual(proxy.take(task), { allowed: 0, blocked: [], blocked_count: 0, bytes_sent: 0, bytes_received: 0 });
  });

  it('stops serving a released task', async () => {
    const { url, proxy, task } = await served(['registry.test']);
    assert.equal(proxy.serves(task), true);
    proxy.release(task);
    assert.equal(proxy.serves(task), false);
    const r = await curl(['-x', url, `http://registry.test:${web.port}/hello`]);
    assert.notEqual(r.code, 0);
  });
});

describe('egress proxy: shared listener and tokens', () => {
  const secret = 's'.repeat(40);
  const exp = () => Math.floor(Date.now() / 1000) + 60;

  it('verifies a token and refuses a tampered, expired or foreign one', () => {
    const claims = { task: 't1', allow: ['registry.test'], step: 'setup 1', iat: Date.now(), exp: exp() };
    const token = signEgressToken(secret, claims);
    assert.deepEqual(verifyEgressToken(secret, token), { ok: true, claims });
    const [payload, sig] = token.split('.');
    const forged = Buffer.from(JSON.stringify({ ...claims, allow: ['*.example.com'] })).toString('base64url');
    assert.deepEqual(verifyEgressToken(secret, `${forged}.${sig}`), { ok: false, reason: 'bad signature' });
    assert.deepEqual(verifyEgressToken('t'.repeat(40), token), { ok: false, reason: 'bad signature' });
    assert.deepEqual(verifyEgressToken(secret, `${payload}.${sig!.slice(1)}`), { ok: false, reason: 'bad signature' });
    assert.deepEqual(verifyEgressToken(secret, signEgressToken(secret, { ...claims, exp: 1_000 })), { ok: false, reason: 'expired' });
    assert.deepEqual(verifyEgressToken(secret, 'garbage'), { ok: false, reason: 'not a token' });
  });

  /** A proxy serving tasks by token on a shared loopback listener, as the cluster's Deployment does. */
  async function sharedProxy(): Promise<{ proxy: EgressProxy; url: string }> {
    const proxy = new EgressProxy({ hosts: hosts(), log });
    const server = net.createServer();
    listeners.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy.serveShared(server, identifyByToken(proxy, secret));
    return { proxy, url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}` };
  }

  it('answers 407 without credentials and serves a task by its token', async () => {
    const { proxy, url } = await sharedProxy();
    const target = `http://registry.test:${web.port}/hello`;
    assert.match((await curl(['-x', url, '-i', target])).stdout, /^HTTP\/1\.1 407/);
    const token = signEgressToken(secret, { task: 'pod-1', allow: ['registry.test'], step: 'step 1', iat: Date.now(), exp: exp() });
    assert.match((await curl(['-x', url, '-i', '-U', `pod-2:${token}`, target])).stdout, /^HTTP\/1\.1 407/);
    assert.equal((await curl(['-x', url, '-U', `pod-1:${token}`, target])).stdout, 'hello from origin\n');
    const s = await curl(['-x', url, '-U', `pod-1:${token}`, '--cacert', certPath, `https://other.test:${secure.port}/`]);
    assert.match(s.stderr, /CONNECT tunnel failed, response 403/);
    const report = proxy.take('pod-1');
    assert.equal(report.allowed, 1);
    assert.equal(report.blocked[0]!.host, 'other.test');
  });

  it('lets the newest token of a task (by issue time) set its grant: an older one that outlives it never restores its own', async () => {
    const { proxy, url } = await sharedProxy();
    const target = `http://registry.test:${web.port}/hello`;
    const status = async (token: string) => (await curl(['-x', url, '-o', '/dev/null', '-w', '%{http_code}', '-U', `pod-7:${token}`, target])).stdout;
    // A setup command's token lives long; the planner's next one (a restarted worker's, say) lives short and grants nothing.
    const setup = signEgressToken(secret, { task: 'pod-7', allow: ['registry.test'], step: 'setup 1', iat: 1_000, exp: exp() + 3_600 });
    const planner = signEgressToken(secret, { task: 'pod-7', allow: [], step: 'step 1', iat: 2_000, exp: exp() });
    assert.equal(await status(setup), '200');
    assert.equal(await status(planner), '403');
    assert.equal(await status(setup), '403', 'a process setup left running gets the newest grant, not its own');
    assert.deepEqual(proxy.take('pod-7').blocked.map((b) => b.step), ['step 1']);
  });
});

describe('egress proxy: the standalone process', () => {
  it('serves tasks by token on its shared port and reports to the bearer of the secret on its admin port', async () => {
    const secret = 'k'.repeat(48);
    const [port, adminPort] = [await freePort(), await freePort()];
    const env = { ...process.env, EGRESS_PROXY_HOST: '127.0.0.1', EGRESS_PROXY_PORT: String(port), EGRESS_PROXY_ADMIN_HOST: '127.0.0.1', EGRESS_PROXY_ADMIN_PORT: String(adminPort), EGRESS_PROXY_SECRET: secret, EGRESS_HOSTS: `registry.test=127.0.0.1:${web.port} other.test=127.0.0.1:${web.port}`, LOG_LEVEL: 'info' };
    const child = spawn(process.execPath, [path.join(__dirname, '..', 'workers', 'egress-proxy-main.js')], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let logs = '';
    try {
      await new Promise<void>((resolve, reject) => {
        child.stderr!.on('data', (c: Buffer) => {
          logs += c.toString();
          if (logs.includes('egress proxy listening')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`exited ${code}: ${logs}`)));
      });
      const token = signEgressToken(secret, { task: 'pod-9', allow: ['registry.test'], step: 'setup 1', iat: Date.now(), exp: Math.floor(Date.now() / 1000) + 60 });
      const r = await curl(['-x', `http://127.0.0.1:${port}`, '-U', `pod-9:${token}`, `http://registry.test:${web.port}/hello`]);
      assert.equal(r.stdout, 'hello from origin\n');
      await curl(['-x', `http://127.0.0.1:${port}`, '-U', `pod-9:${token}`, `http://other.test:${web.port}/hello`]);
      const admin = `http://127.0.0.1:${adminPort}`;
      assert.equal((await call(admin, 'GET', '/healthz')).status, 200);
      assert.equal((await call(admin, 'GET', '/egress/v1/tasks/pod-9/report')).status, 401);
      assert.equal((await call(admin, 'GET', '/egress/v1/tasks/pod-9/report', undefined, { authorization: `Bearer ${secret}x` })).status, 401);
      const report = await call(admin, 'GET', '/egress/v1/tasks/pod-9/report', undefined, { authorization: `Bearer ${secret}` });
      assert.equal(report.body.allowed, 1);
      assert.deepEqual(report.body.blocked.map((b: any) => [b.host, b.step]), [['other.test', 'setup 1']]);
      assert.ok(!logs.includes(token) && !logs.includes(secret), 'no credentials in the logs');
    } finally {
      child.kill();
    }
  });

  it('fails fast naming a bad variable', () => {
    assert.throws(() => loadEgressProxyConfig({ EGRESS_PROXY_SECRET: 'short' }), /EGRESS_PROXY_SECRET/);
    assert.throws(() => loadEgressProxyConfig({ EGRESS_PROXY_SECRET: 'x'.repeat(40), EGRESS_HOSTS: 'mirror.test' }), /EGRESS_HOSTS/);
    assert.deepEqual(loadEgressProxyConfig({ EGRESS_PROXY_SECRET: 'x'.repeat(40), EGRESS_HOSTS: 'a.test=10.0.0.1:80,10.0.0.2:80 b.test=[::1]:8080' }).EGRESS_HOSTS, { 'a.test': ['10.0.0.1:80', '10.0.0.2:80'], 'b.test': ['[::1]:8080'] });
  });
});

/** A real ClientHello, as Node's TLS client sends it for `servername`. */
function captureClientHello(servername: string): Promise<Buffer> {
  return new Promise((resolve) => {
    const server = net.createServer((s) => {
      s.once('data', (c: Buffer) => {
        resolve(c);
        s.destroy();
        server.close();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      tls.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', servername }).on('error', () => {});
    });
  });
}

describe('ClientHello parser', () => {
  it('reads the SNI of a real ClientHello, whole or split over records, and waits on any prefix', async () => {
    const hello = await captureClientHello('registry.test');
    assert.deepEqual(parseClientHello(hello), { kind: 'sni', name: 'registry.test' });
    for (let i = 0; i < hello.length; i++) assert.deepEqual(parseClientHello(hello.subarray(0, i)), { kind: 'incomplete' }, `prefix ${i}`);
    // The same handshake message in two records.
    const body = hello.subarray(5);
    const rec = (b: Buffer) => Buffer.concat([Buffer.from([22, 3, 1, b.length >> 8, b.length & 0xff]), b]);
    assert.deepEqual(parseClientHello(Buffer.concat([rec(body.subarray(0, 50)), rec(body.subarray(50))])), { kind: 'sni', name: 'registry.test' });
  });

  it('never throws or hangs on random, mutated or truncated input', async () => {
    const hello = await captureClientHello('registry.test');
    let seed = 12345;
    const rand = (k: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed % k);
    const t0 = Date.now();
    for (let i = 0; i < 20_000; i++) {
      const m = Buffer.from(hello);
      for (let j = rand(8) + 1; j > 0; j--) m[rand(m.length)] = rand(256);
      const cut = m.subarray(0, rand(m.length + 1));
      const result = parseClientHello(i % 2 ? cut : m);
      assert.ok(['incomplete', 'sni', 'refused'].includes(result.kind));
      const noise = Buffer.from(Array.from({ length: rand(64) }, () => rand(256)));
      if (noise.length) noise[0] = 22;
      if (noise.length > 1) noise[1] = 3;
      parseClientHello(noise);
    }
    assert.ok(Date.now() - t0 < 5_000);
  });
});

describe('address rules', () => {
  it('refuses special-purpose addresses in every spelling and admits public ones', () => {
    for (const a of ['127.0.0.1', '10.0.0.1', '172.16.5.4', '192.168.1.1', '100.64.1.1', '169.254.169.254', '0.0.0.0', '224.0.0.1', '255.255.255.255', '::1', '::', 'fe80::1%eth0', 'fc00::1', 'fd00:ec2::254', 'ff02::1', '::ffff:10.0.0.1', '::ffff:7f00:1', '64:ff9b::a9fe:a9fe', '2002:a00:1::1', '::127.0.0.1']) {
      assert.notEqual(refusedAddress(a), null, a);
    }
    for (const a of ['93.184.215.14', '1.1.1.1', '2606:4700:4700::1111', '::ffff:93.184.215.14', '64:ff9b::5db8:d70e']) assert.equal(refusedAddress(a), null, a);
    assert.equal(refusedAddress('169.254.169.254'), 'cloud metadata address');
  });
});

/**
 * A hostile sandbox against the egress proxy, on loopback: other ports of a host the operator
 * mapped, IP literals in every spelling, and requests the forward half must not pass on
 * (smuggling, protocol upgrades, HTTP/2 prior knowledge).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { after, before, describe, it } from 'node:test';
import { refusedAddress } from '../activities/egress/addresses';
import type { Lookup } from '../activities/egress/destination';
import { MAX_BLOCKED_LISTED, MAX_REFUSED_HOST_CHARS, MAX_REFUSED_REASON_CHARS } from '../activities/egress/ledger';
import { EgressProxy, MAX_CONNECTIONS_PER_TASK } from '../activities/egress/proxy';
import { loadConfig } from '../workers/config';
import { loadEgressProxyConfig } from '../workers/egress-proxy-config';
import { createLogger } from '../workers/log';
import { tempDir } from './support/git-fixture';
import { curl, selfSignedCert, startOrigin, startTlsOrigin, type Origin } from './support/egress-servers';

const log = createLogger({ level: 'error', component: 'egress-attack-test' });
let web: Origin;
let secure: Origin;
/** Another service of the host on loopback (a database, the worker's API …) that no sandbox may reach. */
let hostService: Origin;
let certPath: string;
let n = 0;
const listeners: net.Server[] = [];

before(async () => {
  let cert: { key: string; cert: string };
  ({ certPath, ...cert } = selfSignedCert(tempDir('egress-attacks'), ['registry.test']));
  web = await startOrigin();
  secure = await startTlsOrigin(cert);
  hostService = await startTlsOrigin(cert);
});

after(async () => {
  for (const l of listeners) l.close();
  await Promise.all([web.close(), secure.close(), hostService.close()]);
});

/** A proxy serving a fresh task on its own loopback listener, granted `allow`, with the operator's `hosts`. */
async function served(allow: string[], hosts: Record<string, string[]>, lookup?: Lookup) {
  const proxy = new EgressProxy({ hosts, log, ...(lookup ? { lookup } : {}) });
  const task = `attack-${++n}`;
  const server = net.createServer();
  listeners.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.serveTask(task, server);
  proxy.setGrant(task, { allow, step: 'step 1' });
  const port = (server.address() as net.AddressInfo).port;
  return { proxy, task, port, url: `http://127.0.0.1:${port}` };
}

/** What the proxy answers to `bytes` sent raw on a fresh connection, until it closes (or 2 s pass). */
function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(bytes));
    let got = '';
    const t = setTimeout(() => (sock.destroy(), resolve(got)), 2_000);
    sock.on('data', (c: Buffer) => (got += c.toString('latin1')));
    sock.on('error', () => undefined);
    sock.on('close', () => (clearTimeout(t), resolve(got)));
  });
}

describe('egress attacks: the operator mapped a name to loopback', () => {
  it('reaches only the ports the operator named for it, by CONNECT and by forward', async () => {
    const hosts = { 'registry.test': [`127.0.0.1:${web.port}`, `127.0.0.1:${secure.port}`] };
    const { url, proxy, task } = await served(['registry.test'], hosts);
    assert.equal((await curl(['-x', url, `http://registry.test:${web.port}/hello`])).stdout, 'hello from origin\n');
    assert.equal((await curl(['-x', url, '--cacert', certPath, `https://registry.test:${secure.port}/hello`])).stdout, 'hello from origin\n');
    const before = hostService.connections;
    const tls = await curl(['-x', url, '--cacert', certPath, `https://registry.test:${hostService.port}/hello`]);
    assert.match(tls.stderr, /CONNECT tunnel failed, response 403/);
    const plain = await curl(['-x', url, `http://registry.test:${hostService.port}/hello`]);
    assert.match(plain.stdout, new RegExp(`egress to registry\\.test:${hostService.port} refused: the operator maps registry\\.test to other ports only`));
    assert.equal(hostService.connections, before);
    assert.deepEqual(
      proxy.take(task).blocked.map((b) => [b.port, b.reason]),
      [[hostService.port, 'the operator maps registry.test to other ports only']],
    );
  });

  it('takes ports in EGRESS_HOSTS in both processes, requires them for private addresses, and refuses an address that is not one', () => {
    const env = { DATA_DIR: tempDir('egress-attacks-config'), EGRESS_HOSTS: 'a.test=10.0.0.5:8080 b.test=[fd00::5]:8443 b.test=2606:4700::6' };
    assert.deepEqual(loadConfig(env).EGRESS_HOSTS, { 'a.test': ['10.0.0.5:8080'], 'b.test': ['[fd00::5]:8443', '2606:4700::6'] });
    const proxyEnv = { EGRESS_PROXY_SECRET: 'x'.repeat(40), EGRESS_HOSTS: 'a.test=10.0.0.5:8080,93.184.215.14 b.test=[fd00::5]:8443' };
    assert.deepEqual(loadEgressProxyConfig(proxyEnv).EGRESS_HOSTS, { 'a.test': ['10.0.0.5:8080', '93.184.215.14'], 'b.test': ['[fd00::5]:8443'] });
    // A private or loopback address without its port would open every service there (the worker's API, Temporal's HTTP API …).
    for (const bad of ['a.test=[10.0.0.5]:80', 'a.test=10.0.0.5:0', 'a.test=fd00::5:99999', 'a.test=mirror:80', 'a.test=127.0.0.1', 'a.test=10.0.0.5', 'a.test=fd00::5']) {
      assert.throws(() => loadConfig({ ...env, EGRESS_HOSTS: bad }), /EGRESS_HOSTS/, bad);
      assert.throws(() => loadEgressProxyConfig({ ...proxyEnv, EGRESS_HOSTS: bad }), /EGRESS_HOSTS/, bad);
    }
    assert.throws(() => new EgressProxy({ hosts: { 'a.test': ['127.0.0.1'] }, log }), /EGRESS_HOSTS: "a\.test" maps to 127\.0\.0\.1, a loopback address: name its port/);
  });
});

describe('egress attacks: names that resolve to the worker host itself', () => {
  it("refuses a name resolving to one of this host's own interface addresses, whatever range it is in", async () => {
    const own = Object.values(os.networkInterfaces()).flatMap((l) => l ?? []).filter((i) => !i.internal).map((i) => i.address);
    const answers: Record<string, string> = { 'own4.example': own.find((a) => net.isIPv4(a)) ?? '127.0.0.1', 'own6.example': own.find((a) => net.isIPv6(a)) ?? '::1' };
    const { url, proxy, task } = await served(Object.keys(answers), {}, async (h) => [answers[h]!]);
    for (const name of Object.keys(answers)) await curl(['-x', url, `http://${name}:${web.port}/hello`]);
    const reasons = proxy.take(task).blocked.map((b) => b.reason);
    for (const a of Object.values(answers)) {
      // Loopback stands in on a host with no other interface; its reason is the loopback one.
      const expected = a === '127.0.0.1' || a === '::1' ? 'resolves to a loopback address' : "resolves to this host's own address";
      assert.ok(reasons.includes(`${expected} (${a})`), reasons.join('; '));
    }
  });
});

describe('egress attacks: spellings and requests the proxy must not pass on', () => {
  it('refuses IP literals in every spelling, as a URL and as a CONNECT target, even under a wildcard', async () => {
    const { url, port, proxy, task } = await served(['*.test', '*.0.1'], {});
    const before = web.connections;
    for (const host of ['127.0.0.1', '2130706433', '0x7f.1', '0177.0.0.1', '127.1', '[::ffff:127.0.0.1]', '[::1]']) {
      const r = await curl(['-x', url, `http://${host}:${web.port}/hello`]);
      assert.match(r.stdout, /refused: (not in this task's allowlist|resolves to a loopback address)/, host);
    }
    for (const target of [`2130706433:${web.port}`, `127.0.0.1:${web.port}`, `[::ffff:7f00:1]:${web.port}`, `0x7f000001:${web.port}`]) {
      const got = await rawExchange(port, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
      assert.match(got, /^HTTP\/1\.1 403 .*refused: (not in this task's allowlist|resolves to a loopback address)/s, target);
    }
    assert.equal(web.connections, before);
    assert.ok(proxy.take(task).blocked_count >= 11);
  });

  it('refuses IPv4-translated and other IPv6 forms a translator would deliver to a private IPv4 address', () => {
    for (const a of ['::ffff:0:7f00:1', '::ffff:0:a9fe:a9fe', '::ffff:0:10.0.0.1', '64:ff9b::127.0.0.1', '2002:7f00:1::', '::ffff:127.0.0.1']) {
      assert.notEqual(refusedAddress(a), null, a);
    }
  });

  it('answers smuggling, upgrades and HTTP/2 prior knowledge with 400 and forwards none of them', async () => {
    const { port } = await served(['registry.test'], { 'registry.test': [`127.0.0.1:${web.port}`] });
    const target = `http://registry.test:${web.port}/`;
    const hostLine = `Host: registry.test:${web.port}\r\n`;
    const before = { requests: web.requests.length, connections: web.connections };
    const attempts = [
      `POST ${target} HTTP/1.1\r\n${hostLine}Content-Length: 5\r\nContent-Length: 40\r\n\r\nhello`,
      `POST ${target} HTTP/1.1\r\n${hostLine}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      `POST ${target} HTTP/1.1\r\n${hostLine}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`,
      `GET ${target} HTTP/1.1\r\n${hostLine}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
      'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
    ];
    for (const a of attempts) assert.match(await rawExchange(port, a), /^HTTP\/1\.1 400 /, a.split('\r\n')[0]);
    assert.deepEqual({ requests: web.requests.length, connections: web.connections }, before);
  });
});

describe('egress attacks: exhausting the worker', () => {
  it('keeps a report small however long and many the refused names are', async () => {
    const { port, proxy, task } = await served(['registry.test'], {});
    const long = (i: number) => `${'a'.repeat(60)}.`.repeat(100) + `n${i}.example`;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const get = (host: string) =>
      new Promise<number>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: `http://${host}/`, headers: { host }, agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode!));
          })
          .on('error', reject);
      });
    const codes = await Promise.all(Array.from({ length: MAX_BLOCKED_LISTED }, (_, i) => get(long(i))));
    agent.destroy();
    assert.ok(codes.every((c) => c === 403), codes.join(','));
    const report = proxy.take(task);
    assert.equal(report.blocked_count, MAX_BLOCKED_LISTED);
    // Every refusal goes into an activity result and the task's state: a sandbox must not make those megabytes.
    assert.ok(report.blocked.every((b) => b.host.length <= MAX_REFUSED_HOST_CHARS + 1 && b.reason.length <= MAX_REFUSED_REASON_CHARS + 1), report.blocked[0]!.host.length.toString());
    assert.ok(JSON.stringify(report).length < 64 * 1024, String(JSON.stringify(report).length));
  });

  it('accepts no more than its connection limit from one address on a shared listener', async () => {
    const proxy = new EgressProxy({ hosts: {}, log });
    const server = net.createServer();
    listeners.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy.serveShared(server, () => null);
    const port = (server.address() as net.AddressInfo).port;
    const socks = await Promise.all(
      Array.from({ length: MAX_CONNECTIONS_PER_TASK + 1 }, () => new Promise<net.Socket>((resolve) => { const s = net.connect(port, '127.0.0.1', () => resolve(s)); s.on('error', () => {}); })),
    );
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(socks.filter((s) => s.destroyed || s.readableEnded).length, 1);
    socks.forEach((s) => s.destroy());
    // Closed connections free their places.
    await new Promise((r) => setTimeout(r, 200));
    assert.match(await rawExchange(port, 'GET http://registry.test/ HTTP/1.1\r\nHost: registry.test\r\n\r\n'), /^HTTP\/1\.1 407 /);
  });
});

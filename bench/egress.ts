/**
 * Egress proxy benchmark on loopback: latency of small GETs through the proxy against direct
 * (sequential, no keep-alive on either path, alternating so both see the same machine), and the
 * throughput of a large download with curl through a forward request and through a CONNECT tunnel
 * against direct (median of several runs). The origins run in a process of their own, the proxy in
 * this one, as in a worker.
 *
 *   npm run bench:egress                        # 2,000 GETs, 100 MB × 5
 *   BENCH_REQUESTS=500 BENCH_MB=20 BENCH_RUNS=3 npm run bench:egress
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { EgressProxy } from '../activities/egress/proxy';
import { curl, selfSignedCert } from '../test/support/egress-servers';
import { tempDir } from '../test/support/git-fixture';
import { createLogger } from '../workers/log';
import { summary } from './stats';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 2_000);
const MB = Number(process.env.BENCH_MB ?? 100);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const NAME = 'registry.test';

/** One GET without keep-alive, its body drained. */
function get(opts: http.RequestOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get({ agent: false, ...opts }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on('error', reject);
  });
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** Seconds curl took to download `url` to nowhere (it runs in its own process). */
async function download(args: string[]): Promise<number> {
  const r = await curl(['--max-time', '120', '-o', '/dev/null', '-w', '%{time_total}', ...args]);
  if (r.code !== 0) throw new Error(`curl ${args.join(' ')}: ${r.stderr}`);
  return Number(r.stdout);
}

/** The origins' child process and its ports. */
async function startOrigins(keyPath: string, certPath: string) {
  const child = spawn(process.execPath, [path.join(__dirname, 'egress-origin.js'), keyPath, certPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = await readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]().next().then((r) => [r.value as string]);
  const ports = JSON.parse(line!) as { http: number; https: number };
  return { ...ports, stop: () => child.kill() };
}

async function main(): Promise<void> {
  const cert = selfSignedCert(tempDir('bench-egress'), [NAME]);
  const origins = await startOrigins(cert.keyPath, cert.certPath);
  const proxy = new EgressProxy({ hosts: { [NAME]: [`127.0.0.1:${origins.http}`, `127.0.0.1:${origins.https}`] }, log: createLogger({ level: 'error' }) });
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  proxy.serveTask('bench', listener);
  proxy.setGrant('bench', { allow: [NAME], step: 'bench' });
  const proxyUrl = `http://127.0.0.1:${(listener.address() as net.AddressInfo).port}`;
  const proxyPort = (listener.address() as net.AddressInfo).port;
  const hostHeader = { host: `${NAME}:${origins.http}` };
  const direct = () => get({ host: '127.0.0.1', port: origins.http, path: '/hello', headers: hostHeader });
  const viaProxy = () => get({ host: '127.0.0.1', port: proxyPort, path: `http://${NAME}:${origins.http}/hello`, headers: hostHeader });

  try {
    for (let i = 0; i < 100; i++) await Promise.all([direct(), viaProxy()]);
    const lat = { direct: [] as number[], proxy: [] as number[] };
    for (let i = 0; i < REQUESTS; i++) {
      lat.direct.push(await time(direct));
      lat.proxy.push(await time(viaProxy));
    }
    const big = `/bytes/${MB * 2 ** 20}`;
    const resolve = (port: number) => ['--resolve', `${NAME}:${port}:127.0.0.1`];
    // The ceiling of any relay in this process: two sockets piped, no parsing or checks.
    const bare = net.createServer((c) => {
      const u = net.connect(origins.https, '127.0.0.1');
      c.pipe(u).pipe(c);
      c.on('error', () => u.destroy());
      u.on('error', () => c.destroy());
    });
    await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
    const barePort = (bare.address() as net.AddressInfo).port;
    const dl = { direct: [] as number[], proxy: [] as number[], directTls: [] as number[], tunnel: [] as number[], bare: [] as number[] };
    // CPU time this process (the proxy) spends per download, a figure that does not depend on how many cores the machine has.
    const cpu = { proxy: [] as number[], tunnel: [] as number[] };
    const cpuOf = async (into: number[], fn: () => Promise<number>) => {
      const c0 = process.cpuUsage();
      const s = await fn();
      const c = process.cpuUsage(c0);
      into.push((c.user + c.system) / 1000);
      return s;
    };
    for (let i = 0; i < RUNS; i++) {
      dl.direct.push(await download([...resolve(origins.http), `http://${NAME}:${origins.http}${big}`]));
      dl.proxy.push(await cpuOf(cpu.proxy, () => download(['-x', proxyUrl, `http://${NAME}:${origins.http}${big}`])));
      dl.directTls.push(await download([...resolve(origins.https), '--cacert', cert.certPath, `https://${NAME}:${origins.https}${big}`]));
      dl.tunnel.push(await cpuOf(cpu.tunnel, () => download(['-x', proxyUrl, '--cacert', cert.certPath, `https://${NAME}:${origins.https}${big}`])));
      dl.bare.push(await download([...resolve(barePort), '--cacert', cert.certPath, `https://${NAME}:${barePort}${big}`]));
    }
    bare.close();
    const report = proxy.take('bench');
    const d = summary(lat.direct);
    const p = summary(lat.proxy);
    const r1 = (x: number) => Math.round(x * 10) / 10;
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const mbps = (s: number) => r1(MB / s);
    const ratio = (directS: number, proxyS: number) => `${Math.round((directS / proxyS) * 100)}% of direct`;
    const cpus = os.cpus();
    const lines = [
      `Egress proxy, ${new Date().toISOString()}, ${cpus.length} × ${cpus[0]?.model ?? 'cpu'}, ${os.platform()} ${os.release()}, Node ${process.version}`,
      `Command: \`BENCH_REQUESTS=${REQUESTS} BENCH_MB=${MB} BENCH_RUNS=${RUNS} npm run bench:egress\``,
      '',
      '| measure | direct | through the proxy | overhead / ratio |',
      '| --- | --- | --- | --- |',
      `| GET latency p50 (ms, ${REQUESTS} sequential, no keep-alive) | ${d.p50} | ${p.p50} | +${r1(p.p50 - d.p50)} ms |`,
      `| GET latency p95 (ms) | ${d.p95} | ${p.p95} | +${r1(p.p95 - d.p95)} ms |`,
      `| ${MB} MB http download with curl, median of ${RUNS} (MB/s) | ${mbps(med(dl.direct))} | ${mbps(med(dl.proxy))} (forward) | ${ratio(med(dl.direct), med(dl.proxy))} |`,
      `| ${MB} MB https download with curl, median of ${RUNS} (MB/s) | ${mbps(med(dl.directTls))} | ${mbps(med(dl.tunnel))} (CONNECT) | ${ratio(med(dl.directTls), med(dl.tunnel))} |`,
      `| ${MB} MB https download through a bare socket relay in this process (MB/s) | ${mbps(med(dl.directTls))} | ${mbps(med(dl.bare))} (pipe, no checks) | ${ratio(med(dl.directTls), med(dl.bare))} |`,
      `| proxy CPU per ${MB} MB download, median (ms) | — | ${Math.round(med(cpu.proxy))} (forward), ${Math.round(med(cpu.tunnel))} (CONNECT) | |`,
      '',
      `Proxy ledger: ${report.allowed} allowed, ${report.blocked_count} refused, ${Math.round(report.bytes_received / 2 ** 20)} MiB received, ${Math.round(report.bytes_sent / 2 ** 10)} KiB sent.`,
    ];
    console.log(lines.join('\n'));
  } finally {
    proxy.release('bench');
    origins.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

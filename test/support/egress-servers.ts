/**
 * Loopback destinations for the egress proxy's tests and benchmark: a plain HTTP origin and a TLS
 * one (self-signed certificate made by openssl) that record what reached them, and curl run
 * asynchronously (the proxy under test lives in the same process).
 */
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import path from 'node:path';

/** A certificate for `names` and its key, written under `dir` (cert.pem is also the CA curl trusts). */
export function selfSignedCert(dir: string, names: string[]): { key: string; cert: string; keyPath: string; certPath: string } {
  const keyPath = path.join(dir, 'key.pem');
  const certPath = path.join(dir, 'cert.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
    '-keyout', keyPath, '-out', certPath,
  ], { stdio: 'ignore' });
  return { key: fs.readFileSync(keyPath, 'utf8'), cert: fs.readFileSync(certPath, 'utf8'), keyPath, certPath };
}

/** A loopback origin: what reached it, and how to stop it. */
export interface Origin {
  port: number;
  /** Requests it answered (method, Host header, path). */
  requests: { method: string; host: string | undefined; url: string }[];
  /** TCP connections it accepted. */
  connections: number;
  close(): Promise<void>;
}

const CHUNK = Buffer.alloc(64 * 1024, 'x');

/** `/hello` answers a line; `/bytes/<n>` streams n bytes; anything else echoes the size of the request body. */
function handler(origin: Origin): http.RequestListener {
  return (req, res) => {
    origin.requests.push({ method: req.method ?? '', host: req.headers.host, url: req.url ?? '' });
    const bytes = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
    if (req.url === '/hello') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('hello from origin\n');
    } else if (bytes) {
      let left = Number(bytes[1]);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': left });
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, CHUNK.length);
          left -= n;
          if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    } else {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(`received ${n} bytes for ${req.url}\n`));
    }
  };
}

async function listen(server: http.Server, origin: Origin): Promise<Origin> {
  server.on('connection', () => origin.connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin.port = (server.address() as net.AddressInfo).port;
  origin.close = () => new Promise((resolve) => server.close(() => resolve()).closeAllConnections());
  return origin;
}

/** A plain HTTP origin on loopback. */
export function startOrigin(): Promise<Origin> {
  const origin: Origin = { port: 0, requests: [], connections: 0, close: async () => {} };
  return listen(http.createServer(handler(origin)), origin);
}

/** A TLS origin on loopback serving `cert`. */
export function startTlsOrigin(cert: { key: string; cert: string }): Promise<Origin> {
  const origin: Origin = { port: 0, requests: [], connections: 0, close: async () => {} };
  return listen(https.createServer({ key: cert.key, cert: cert.cert }, handler(origin)), origin);
}

/** curl's exit code and output; the environment carries no proxy settings of its own. */
export function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/_proxy$/i.test(k)));
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', ...args], { env, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as any).code === 'number' ? (err as any).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * A loopback git smart-HTTP server: `git http-backend` (CGI) behind a Node http server that requires
 * Basic auth, so tests can push to an https-like remote that needs a credential.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** A running server and what it saw. */
export interface GitHttpServer {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  origin: string;
  /** Requests refused for missing or wrong credentials, and requests served. */
  counts: { unauthorized: number; served: number };
  stop(): Promise<void>;
}

/** Serves the repositories under `projectRoot` to `user` with `password` only (or a password `password` accepts when it is asked each time). */
export function startGitHttpServer(projectRoot: string, user: string, password: string | ((given: string) => boolean)): Promise<GitHttpServer> {
  const accepts = typeof password === 'string' ? (given: string) => given === password : password;
  const counts = { unauthorized: 0, served: 0 };
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    if (!authorized(req.headers.authorization, user, accepts)) {
      counts.unauthorized++;
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="git"' }).end();
      return;
    }
    counts.served++;
    const url = new URL(req.url ?? '/', 'http://localhost');
    const cgi = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        GIT_PROJECT_ROOT: projectRoot,
        GIT_HTTP_EXPORT_ALL: '1',
        REMOTE_USER: user,
        REMOTE_ADDR: '127.0.0.1',
        REQUEST_METHOD: req.method ?? 'GET',
        PATH_INFO: decodeURIComponent(url.pathname),
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        ...(req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
        ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: String(req.headers['content-encoding']) } : {}),
        ...(req.headers['git-protocol'] ? { GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
      },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      headersDone = true;
      let status = 200;
      for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10);
        else res.setHeader(name, value);
      }
      res.writeHead(status);
      res.write(head.subarray(end + 4));
    });
    cgi.on('close', () => res.end());
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        origin: `http://127.0.0.1:${port}`,
        counts,
        stop: () =>
          new Promise((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

/** Whether a Basic `authorization` header names `user` with a password `accepts` takes. */
function authorized(authorization: string | undefined, user: string, accepts: (given: string) => boolean): boolean {
  const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(authorization ?? '');
  if (m === null) return false;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon >= 0 && decoded.slice(0, colon) === user && accepts(decoded.slice(colon + 1));
}

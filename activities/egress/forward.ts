/**
 * Plain `http:` requests in absolute form: admit the URL's host, connect to the checked address,
 * send the request with the URL's Host and without hop-by-hop or proxy headers, and stream the
 * bodies both ways.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type net from 'node:net';
import { normalizeHost } from '../../domain/egress';
import type { Logger } from '../../workers/log';
import { EgressRefused, REFUSED_HEADER, type Flow, type Gate } from './relay';

/** Headers that describe one connection, not the message (RFC 9110 7.6.1), plus the proxy's own credentials. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** `rawHeaders` without hop-by-hop headers, those `Connection` names, and any in `drop`. */
export function endToEnd(raw: readonly string[], drop: readonly string[] = []): string[] {
  const named = new Set(drop);
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') for (const t of raw[i + 1]!.split(',')) named.add(t.trim().toLowerCase());
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    if (!HOP_BY_HOP.has(k) && !named.has(k)) out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

/** `host[:port]` as the proxy compares authorities: normalised name, default port spelled out. */
function authority(host: string, port: string, defaultPort: number): string {
  return `${normalizeHost(host.replace(/^\[|\]$/g, ''))}:${port || defaultPort}`;
}

/** Whether a `Host` header value names the URL's own authority. */
export function sameAuthority(hostHeader: string, url: URL): boolean {
  let parsed: URL;
  try {
    parsed = new URL(`http://${hostHeader}`);
  } catch {
    return false;
  }
  if (parsed.username || parsed.password || parsed.pathname !== '/' || `${parsed.host}` === '') return false;
  return authority(parsed.hostname, parsed.port, 80) === authority(url.hostname, url.port, 80);
}

/** Serve one forward-proxy request of `task`. */
export async function forward(gate: Gate, log: Logger, task: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let url: URL;
  try {
    url = new URL(req.url ?? '');
  } catch {
    return plain(res, 400, 'this is an egress proxy: send requests with an absolute http:// URL, or CONNECT for https');
  }
  if (url.protocol !== 'http:') return plain(res, 400, `only http: URLs are forwarded (use CONNECT for ${url.protocol.replace(/:$/, '')})`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || 80);
  let addresses: string[];
  try {
    const sent = req.headers.host;
    if (sent !== undefined && !sameAuthority(sent, url)) {
      throw gate.refuse(task, host, port, `the Host header names another host ("${sent.slice(0, 100)}": domain fronting)`);
    }
    addresses = (await gate.admit(task, host, port)).addresses;
  } catch (err) {
    if (err instanceof EgressRefused) return plain(res, 403, err.message, REFUSED_HEADER);
    throw err;
  }
  let upstream: net.Socket;
  try {
    upstream = await gate.connect(addresses, port);
  } catch (err) {
    log.info('egress request could not connect', { task, host, port, error: (err as Error).message });
    return plain(res, 502, `egress to ${host}:${port}: could not connect`);
  }
  const flow: Flow = {
    host,
    upstream,
    counted: { sent: 0, received: 0 },
    end: () => {
      upstream.destroy();
      req.socket.destroy();
    },
  };
  if (gate.open(task, flow) === null) return flow.end();
  let closed = false;
  const done = () => {
    if (closed) return;
    closed = true;
    upstream.destroy();
    gate.close(task, flow);
  };
  upstream.setTimeout(gate.timeouts.idle, () => flow.end());
  upstream.on('close', done);
  res.on('close', done);

  const headers = ['Host', url.host, ...endToEnd(req.rawHeaders, ['host'])];
  const out = http.request({ createConnection: () => upstream, method: req.method, path: `${url.pathname}${url.search}`, headers, setHost: false });
  out.on('response', (up) => {
    try {
      res.writeHead(up.statusCode ?? 502, up.statusMessage, endToEnd(up.rawHeaders));
    } catch (err) {
      // A destination may send what Node parses but will not write again (a bad character in a header, say); it must not take the process down.
      log.info('egress response not relayed', { task, host, port, error: (err as Error).message });
      up.destroy();
      return plain(res, 502, `egress to ${host}:${port}: the destination sent a response that cannot be relayed`);
    }
    up.pipe(res);
    up.on('error', () => res.destroy());
  });
  out.on('error', () => {
    if (!res.headersSent) plain(res, 502, `egress to ${host}:${port}: the destination closed the connection`);
    else res.destroy();
  });
  req.pipe(out);
  req.on('error', () => out.destroy());
}

/** A short text answer (refusals, client errors). */
function plain(res: ServerResponse, status: number, text: string, extra: Record<string, string> = {}): void {
  if (res.headersSent) return void res.destroy();
  const body = `${text}\n`;
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), ...extra });
  res.end(body);
}

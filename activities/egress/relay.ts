/**
 * What the forwarding and tunnelling halves of the egress proxy share: the gate they ask before
 * connecting, the connection to a checked address, and the refusal answer on a raw socket.
 */
import net from 'node:net';
import type { Destination } from './destination';

/** How long connecting to a destination may take. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** How long a tunnel or a forwarded exchange may go without a byte either way. */
export const IDLE_TIMEOUT_MS = 5 * 60_000;
/** How long a client may take to send a request's headers, from connecting or from the end of its previous exchange. */
export const HEADER_TIMEOUT_MS = 10_000;
/** How long a client may take to send its ClientHello once its tunnel is open. */
export const CLIENT_HELLO_TIMEOUT_MS = 10_000;

/** How long each phase of an exchange may take, in milliseconds. */
export interface EgressTimeouts {
  connect: number;
  header: number;
  clientHello: number;
  idle: number;
}

/** The timeouts a proxy uses unless told otherwise. */
export const DEFAULT_TIMEOUTS: Readonly<EgressTimeouts> = {
  connect: CONNECT_TIMEOUT_MS,
  header: HEADER_TIMEOUT_MS,
  clientHello: CLIENT_HELLO_TIMEOUT_MS,
  idle: IDLE_TIMEOUT_MS,
};

/** A refusal the gate already recorded; `message` is what the client is told. */
export class EgressRefused extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'EgressRefused';
  }
}

/** One open exchange with a destination, so a narrowed grant can end it and its bytes are counted. */
export interface Flow {
  host: string;
  upstream: net.Socket;
  /** Bytes of `upstream` already counted. */
  counted: { sent: number; received: number };
  /** End the exchange (both sockets). */
  end(): void;
}

/** The proxy as its forwarding and tunnelling halves see it. */
export interface Gate {
  readonly timeouts: Readonly<EgressTimeouts>;
  /** Check `host:port` against the task's grant, resolve and check its addresses; throws EgressRefused (recorded). */
  admit(task: string, host: string, port: number): Promise<Destination>;
  /** Record a refusal found after admission (a TLS name that does not match, say) and return the client's message. */
  refuse(task: string, host: string, port: number, reason: string): EgressRefused;
  /** Connect to one of the checked addresses (never a name). */
  connect(addresses: readonly string[], port: number, onread?: net.OnReadOpts): Promise<net.Socket>;
  /** Register an exchange that connected; null when the grant no longer admits the host (the caller ends it). */
  open(task: string, flow: Flow): Flow | null;
  /** The exchange is over: count its last bytes and forget it. */
  close(task: string, flow: Flow): void;
}

/**
 * A socket connected to the first of the checked `addresses` that answers; never a name, so nothing
 * resolves it again.
 */
export async function connectChecked(addresses: readonly string[], port: number, timeoutMs = CONNECT_TIMEOUT_MS, onread?: net.OnReadOpts): Promise<net.Socket> {
  let last: unknown = new Error('no address');
  for (const host of addresses) {
    try {
      return await connectOne(host, port, timeoutMs, onread);
    } catch (err) {
      last = err;
    }
  }
  throw last;
}

function connectOne(host: string, port: number, timeoutMs: number, onread?: net.OnReadOpts): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port, noDelay: true, ...(onread ? { onread } : {}) });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`connecting to ${host}:${port} timed out`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Largest read from a destination: reads of 64 KiB (Node's default) leave a loopback download waiting on wake-ups between them. */
export const RELAY_READ_BYTES = 1 << 20;

/**
 * Reads of up to RELAY_READ_BYTES written on to `dest` (a copy of each, since the read buffer is
 * reused), pausing the source while `dest` is full; `source` names the socket these options create.
 */
export function relayReads(dest: net.Socket, source: () => net.Socket | undefined): net.OnReadOpts {
  return {
    buffer: Buffer.allocUnsafe(RELAY_READ_BYTES),
    callback: (n, buf) => {
      if (dest.write(Buffer.from(buf.subarray(0, n)))) return true;
      dest.once('drain', () => source()?.resume());
      return false;
    },
  };
}

/** Answer `status` with a short text body on a socket the HTTP server handed over (CONNECT), then close it. */
export function answerRaw(sock: net.Socket, status: 403 | 407 | 400 | 502 | 503, text: string, extra: Record<string, string> = {}): void {
  const reason = { 400: 'Bad Request', 403: 'Forbidden', 407: 'Proxy Authentication Required', 502: 'Bad Gateway', 503: 'Service Unavailable' }[status];
  const body = Buffer.from(`${text}\n`);
  const headers = { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': String(body.length), Connection: 'close', ...extra };
  const head = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  sock.end(Buffer.concat([Buffer.from(`HTTP/1.1 ${status} ${reason}\r\n${head}\r\n`), body]));
}

/** The header every refusal carries, so tools and tests tell a proxy refusal from a destination's 403. */
export const REFUSED_HEADER = { 'X-Agent-Egress': 'refused' } as const;

/**
 * `CONNECT host:port` tunnels: admit the host before answering, then hold the client's first bytes
 * until its whole ClientHello is there and require its SNI to be the CONNECT host, and only then
 * connect to the checked address and relay both ways. No TLS is terminated.
 */
import type { IncomingMessage } from 'node:http';
import type net from 'node:net';
import { normalizeHost } from '../../domain/egress';
import type { Logger } from '../../workers/log';
import { MAX_CLIENT_HELLO_BYTES, parseClientHello, type ClientHelloResult } from './client-hello';
import { answerRaw, EgressRefused, relayReads, REFUSED_HEADER, type Flow, type Gate } from './relay';

/** Bytes held while waiting for a ClientHello (its records' headers included). */
const MAX_HELLO_BUFFER = 2 * MAX_CLIENT_HELLO_BYTES;

const AUTHORITY = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:/?#@[\]]+)):(\d{1,5})$/;

/** The host and port of a CONNECT request's target, or null when it is not `host:port`. */
export function connectTarget(target: string): { host: string; port: number } | null {
  const m = AUTHORITY.exec(target);
  if (!m) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return { host: m[1] ?? m[2]!, port };
}

/** Serve one CONNECT request of `task` on the socket the HTTP server handed over. */
export async function tunnel(gate: Gate, log: Logger, task: string, req: IncomingMessage, client: net.Socket, head: Buffer): Promise<void> {
  client.on('error', () => client.destroy());
  const target = connectTarget(req.url ?? '');
  if (!target) return answerRaw(client, 400, 'CONNECT needs host:port');
  const { host, port } = target;
  let addresses: string[];
  try {
    addresses = (await gate.admit(task, host, port)).addresses;
  } catch (err) {
    if (err instanceof EgressRefused) return answerRaw(client, 403, err.message, REFUSED_HEADER);
    throw err;
  }
  if (client.destroyed) return;
  client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
  const { bytes, result } = await readClientHello(client, head, gate.timeouts.clientHello);
  if (client.destroyed) return;
  const mismatch = sniProblem(result, host);
  if (mismatch !== null) {
    gate.refuse(task, host, port, mismatch);
    client.destroy();
    return;
  }
  let upstream: net.Socket | undefined;
  try {
    upstream = await gate.connect(addresses, port, relayReads(client, () => upstream));
  } catch (err) {
    log.info('egress tunnel could not connect', { task, host, port, error: (err as Error).message });
    client.destroy();
    return;
  }
  const up = upstream;
  const flow: Flow = {
    host,
    upstream: up,
    counted: { sent: 0, received: 0 },
    end: () => {
      client.destroy();
      up.destroy();
    },
  };
  if (client.destroyed || gate.open(task, flow) === null) return flow.end();
  let closed = false;
  const done = () => {
    if (closed) return;
    closed = true;
    flow.end();
    gate.close(task, flow);
  };
  for (const s of [client, up]) {
    s.setTimeout(gate.timeouts.idle, done);
    s.on('error', done);
    s.on('close', done);
  }
  up.write(bytes);
  client.pipe(up);
  // Downloads are the heavy direction: read the destination in large pieces (relayReads), not by pipe().
  up.on('end', () => client.end());
}

/** Why the ClientHello does not admit a tunnel to `host`, or null when its SNI names it. */
function sniProblem(result: ClientHelloResult, host: string): string | null {
  if (result.kind === 'refused') return result.reason;
  if (result.kind === 'incomplete') return 'no ClientHello in time';
  if (normalizeHost(result.name) !== normalizeHost(host)) return `TLS name mismatch (SNI "${result.name}" in a tunnel to ${host})`;
  return null;
}

/** The bytes the client sent until its ClientHello was whole (or refused, or the wait ran out). */
function readClientHello(client: net.Socket, head: Buffer, timeoutMs: number): Promise<{ bytes: Buffer; result: ClientHelloResult }> {
  return new Promise((resolve) => {
    let bytes = head;
    const finish = (result: ClientHelloResult) => {
      clearTimeout(timer);
      client.off('data', onData);
      client.off('close', onClose);
      client.pause();
      resolve({ bytes, result });
    };
    const check = () => {
      if (bytes.length > MAX_HELLO_BUFFER) return finish({ kind: 'refused', reason: 'ClientHello too large' });
      const result = parseClientHello(bytes);
      if (result.kind !== 'incomplete') finish(result);
    };
    const onData = (chunk: Buffer) => {
      bytes = Buffer.concat([bytes, chunk]);
      check();
    };
    const onClose = () => finish({ kind: 'incomplete' });
    const timer = setTimeout(() => finish({ kind: 'incomplete' }), timeoutMs);
    client.on('data', onData);
    client.on('close', onClose);
    if (bytes.length > 0) check();
  });
}

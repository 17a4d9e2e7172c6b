/**
 * The egress proxy: one HTTP server that never listens itself, fed the sockets accepted on each
 * task's own listener (gVisor: a listener in the task's network namespace) or on a shared listener
 * whose requests name their task by proxy credentials (pods). Every socket and request is
 * attributed to a task, checked against that task's grant, and counted in its ledger.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import { hostAllowed } from '../../domain/egress';
import type { Logger } from '../../workers/log';
import { canonicalAddress, hostAddresses } from './addresses';
import { DestinationRefused, operatorHosts, resolveDestination, systemLookup, type Destination, type Lookup, type OperatorAddress } from './destination';
import { forward } from './forward';
import { Ledger } from './ledger';
import { answerRaw, connectChecked, DEFAULT_TIMEOUTS, EgressRefused, type EgressTimeouts, type Flow, type Gate } from './relay';
import { tunnel } from './tunnel';
import type { EgressGrant, EgressProxyPort, EgressReport } from './types';

/** Client connections one task (on a shared listener: one client address) may hold open at once (one sandbox must not exhaust the worker's sockets). */
export const MAX_CONNECTIONS_PER_TASK = 256;
/** Exchanges with destinations one task may have open at once. */
export const MAX_FLOWS_PER_TASK = 256;

/** What the proxy needs: the operator's own names, where to log, and (for tests) how to resolve the rest. */
export interface EgressProxyOptions {
  /** EGRESS_HOSTS: names the operator maps to addresses (`ip` or `ip:port`, `[ipv6]:port`); exempt from the private-address refusal. */
  hosts: Record<string, string[]>;
  log: Logger;
  lookup?: Lookup;
  /** Shorter or longer phases than DEFAULT_TIMEOUTS (tests shorten them). */
  timeouts?: Partial<EgressTimeouts>;
}

/** Maps a request on a shared listener to its task (by its Proxy-Authorization), or null (answered 407). */
export type Identify = (req: IncomingMessage) => string | null;

interface TaskState {
  grant: EgressGrant | null;
  ledger: Ledger;
  listeners: Set<net.Server>;
  sockets: Set<net.Socket>;
  flows: Set<Flow>;
}

const ALLOWLIST_HINT = ' (ask a human: request_network)';

/** The egress proxy of a worker (serveTask) or of the cluster's Deployment (serveShared). */
export class EgressProxy implements EgressProxyPort, Gate {
  private readonly http: http.Server;
  private readonly hosts: Map<string, OperatorAddress[]>;
  private readonly lookup: Lookup;
  private readonly log: Logger;
  readonly timeouts: Readonly<EgressTimeouts>;
  private readonly tasks = new Map<string, TaskState>();
  private readonly socketTask = new WeakMap<net.Socket, string>();
  private readonly socketIdentify = new WeakMap<net.Socket, Identify>();
  private readonly headerTimers = new WeakMap<net.Socket, NodeJS.Timeout>();
  private readonly shared = new Set<net.Server>();

  constructor(opts: EgressProxyOptions) {
    this.hosts = operatorHosts(opts.hosts);
    this.lookup = opts.lookup ?? systemLookup;
    this.log = opts.log;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    // The server's own header and request timeouts need it to listen; the header timeout is enforced per socket instead.
    this.http = http.createServer({ requestTimeout: 0, headersTimeout: 0, keepAliveTimeout: this.timeouts.header });
    this.http.on('request', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res));
    this.http.on('connect', (req: IncomingMessage, sock: net.Socket, head: Buffer) => this.onConnect(req, sock, head));
    this.http.on('upgrade', (_req: IncomingMessage, sock: net.Socket) => answerRaw(sock, 400, 'protocol upgrades are not forwarded; use CONNECT'));
    this.http.on('clientError', (_err: Error, sock: net.Socket) => {
      if (sock.writable) answerRaw(sock, 400, 'malformed request');
      else sock.destroy();
    });
  }

  serveTask(taskId: string, server: net.Server): void {
    const st = this.state(taskId);
    st.listeners.add(server);
    server.on('connection', (sock: net.Socket) => {
      // A listener of a released task may still hand over a connection it accepted before closing.
      if (this.tasks.get(taskId) !== st) return void sock.destroy();
      if (st.sockets.size >= MAX_CONNECTIONS_PER_TASK) {
        this.log.warn('egress connection refused: too many connections', { task: taskId, limit: MAX_CONNECTIONS_PER_TASK });
        sock.destroy();
        return;
      }
      st.sockets.add(sock);
      sock.on('close', () => st.sockets.delete(sock));
      this.socketTask.set(sock, taskId);
      this.accept(sock);
    });
  }

  /** Serve a listener many tasks share (the cluster's proxy): each request names its task through `identify`. */
  serveShared(server: net.Server, identify: Identify): void {
    this.shared.add(server);
    // Per client address (one pod each): before a request names its task, the address is all there is to count by.
    const open = new Map<string, number>();
    server.on('connection', (sock: net.Socket) => {
      const from = sock.remoteAddress ?? '';
      const count = open.get(from) ?? 0;
      if (count >= MAX_CONNECTIONS_PER_TASK) {
        this.log.warn('egress connection refused: too many connections', { from, limit: MAX_CONNECTIONS_PER_TASK });
        sock.destroy();
        return;
      }
      open.set(from, count + 1);
      sock.once('close', () => {
        const left = (open.get(from) ?? 1) - 1;
        if (left === 0) open.delete(from);
        else open.set(from, left);
      });
      this.socketIdentify.set(sock, identify);
      this.accept(sock);
    });
  }

  serves(taskId: string): boolean {
    return (this.tasks.get(taskId)?.listeners.size ?? 0) > 0;
  }

  setGrant(taskId: string, grant: EgressGrant | null): void {
    const st = this.state(taskId);
    st.grant = grant === null ? null : { allow: [...grant.allow], step: grant.step };
    for (const f of [...st.flows]) {
      if (grant === null || !hostAllowed(f.host, grant.allow)) {
        this.log.info('egress exchange ended: the grant no longer admits its host', { task: taskId, host: f.host });
        f.end();
      }
    }
  }

  take(taskId: string): EgressReport {
    const st = this.tasks.get(taskId);
    if (!st) return new Ledger().take();
    for (const f of st.flows) this.count(st, f);
    return st.ledger.take();
  }

  release(taskId: string): void {
    const st = this.tasks.get(taskId);
    if (!st) return;
    this.tasks.delete(taskId);
    for (const f of st.flows) f.end();
    for (const s of st.sockets) s.destroy();
    for (const l of st.listeners) l.close();
  }

  /** Stop serving every task and every shared listener (the worker is shutting down). */
  stop(): void {
    for (const id of [...this.tasks.keys()]) this.release(id);
    for (const l of this.shared) l.close();
    this.shared.clear();
  }

  async admit(task: string, host: string, port: number): Promise<Destination> {
    const st = this.tasks.get(task);
    const check = () => {
      if (!st?.grant) throw this.refuse(task, host, port, 'this task has no network access');
      if (!hostAllowed(host, st.grant.allow)) throw this.refuse(task, host, port, "not in this task's allowlist");
      if (st.flows.size >= MAX_FLOWS_PER_TASK) throw this.refuse(task, host, port, `too many open connections (${MAX_FLOWS_PER_TASK})`);
    };
    check();
    let dest: Destination;
    try {
      dest = await resolveDestination(host, port, this.hosts, this.lookup);
    } catch (err) {
      if (err instanceof DestinationRefused) throw this.refuse(task, host, port, err.reason);
      throw err;
    }
    if (dest.addresses.some((a) => this.isOwnListener(a, port))) throw this.refuse(task, host, port, "the proxy's own listener");
    // The grant may have narrowed while the name resolved.
    check();
    return dest;
  }

  refuse(task: string, host: string, port: number, reason: string): EgressRefused {
    const st = this.tasks.get(task);
    const step = st?.grant?.step ?? '';
    st?.ledger.refuse({ host, port, step, reason });
    this.log.warn('egress refused', { task, host, port, step, reason });
    const hint = reason === "not in this task's allowlist" || reason === 'this task has no network access' ? ALLOWLIST_HINT : '';
    return new EgressRefused(reason, `egress to ${host}:${port} refused: ${reason}${hint}`);
  }

  connect(addresses: readonly string[], port: number, onread?: net.OnReadOpts): Promise<net.Socket> {
    return connectChecked(addresses, port, this.timeouts.connect, onread);
  }

  open(task: string, flow: Flow): Flow | null {
    const st = this.tasks.get(task);
    if (!st?.grant || !hostAllowed(flow.host, st.grant.allow)) return null;
    st.flows.add(flow);
    st.ledger.allow();
    this.log.debug('egress allowed', { task, host: flow.host, port: flow.upstream.remotePort, step: st.grant.step });
    return flow;
  }

  close(task: string, flow: Flow): void {
    const st = this.tasks.get(task);
    if (!st?.flows.delete(flow)) return;
    this.count(st, flow);
  }

  /** Add the bytes `flow` relayed since they were last counted. */
  private count(st: TaskState, flow: Flow): void {
    const sent = flow.upstream.bytesWritten;
    const received = flow.upstream.bytesRead;
    st.ledger.bytes(sent - flow.counted.sent, received - flow.counted.received);
    flow.counted = { sent, received };
  }

  private state(taskId: string): TaskState {
    let st = this.tasks.get(taskId);
    if (!st) {
      st = { grant: null, ledger: new Ledger(), listeners: new Set(), sockets: new Set(), flows: new Set() };
      this.tasks.set(taskId, st);
    }
    return st;
  }

  /** Hand a client socket to the HTTP server, with a deadline for its first request's headers. */
  private accept(sock: net.Socket): void {
    sock.setNoDelay(true);
    this.armHeaderTimer(sock);
    sock.once('close', () => clearTimeout(this.headerTimers.get(sock)));
    this.http.emit('connection', sock);
  }

  private armHeaderTimer(sock: net.Socket): void {
    clearTimeout(this.headerTimers.get(sock));
    const timer = setTimeout(() => sock.destroy(), this.timeouts.header);
    timer.unref();
    this.headerTimers.set(sock, timer);
  }

  /** The task a request belongs to: its socket's, or (shared listener) its credentials'. Undefined: not identified. */
  private taskOf(req: IncomingMessage): string | null {
    const sock = req.socket;
    const bound = this.socketTask.get(sock);
    if (bound !== undefined) return bound;
    const identify = this.socketIdentify.get(sock);
    return identify ? identify(req) : null;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    clearTimeout(this.headerTimers.get(req.socket));
    res.on('finish', () => {
      if (!req.socket.destroyed) this.armHeaderTimer(req.socket);
    });
    const task = this.taskOf(req);
    if (task === null) {
      res.writeHead(407, { 'Proxy-Authenticate': 'Basic realm="egress"', 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' });
      res.end('proxy credentials required\n');
      return;
    }
    forward(this, this.log, task, req, res).catch((err) => {
      this.log.error('egress request failed', { task, error: err });
      res.destroy();
    });
  }

  private onConnect(req: IncomingMessage, sock: net.Socket, head: Buffer): void {
    clearTimeout(this.headerTimers.get(sock));
    const task = this.taskOf(req);
    if (task === null) return answerRaw(sock, 407, 'proxy credentials required', { 'Proxy-Authenticate': 'Basic realm="egress"' });
    tunnel(this, this.log, task, req, sock, head).catch((err) => {
      this.log.error('egress tunnel failed', { task, error: err });
      sock.destroy();
    });
  }

  /** Whether `address:port` is a listener this proxy serves (a request must not loop back into it). */
  private isOwnListener(address: string, port: number): boolean {
    const listeners = [...this.shared, ...[...this.tasks.values()].flatMap((t) => [...t.listeners])];
    for (const l of listeners) {
      const a = l.address();
      if (a === null || typeof a === 'string' || a.port !== port) continue;
      if (sameAddress(a.address, address)) return true;
      if (isUnspecified(a.address) && (isLoopback(address) || localAddresses().some((x) => sameAddress(x, address)))) return true;
    }
    return false;
  }
}

/** Addresses of this host's interfaces and the unspecified ones: what a listener on "any" answers on besides loopback. */
function localAddresses(): string[] {
  return ['0.0.0.0', '::', ...hostAddresses()];
}

function sameAddress(a: string, b: string): boolean {
  return canonicalAddress(a) === canonicalAddress(b);
}

function isUnspecified(a: string): boolean {
  return a === '0.0.0.0' || a === '::';
}

function isLoopback(a: string): boolean {
  const c = canonicalAddress(a);
  return c === '::1' || (net.isIPv4(c) && c.startsWith('127.'));
}

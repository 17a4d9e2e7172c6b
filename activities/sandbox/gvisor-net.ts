/**
 * The network of a gVisor sandbox whose task may reach the egress proxy, and nothing else.
 *
 * Each such sandbox gets two network namespaces, made with `ip`: its own (runsc's netstack takes over
 * the interface it finds there) and a proxy side, joined by a veth pair that exists only inside the two.
 * The proxy side holds nothing but loopback, its veth end and one listening socket, with forwarding
 * off: whatever the sandbox sends, be it to any address or with any route it could add, arrives in a
 * namespace with no route anywhere and no other listener. Nothing is added to the host's namespace.
 * The listener is made inside the proxy side by a short-lived helper (`gvisor-net-listener.ts`) that
 * hands the listening socket to this process, where the egress proxy serves it as the task's.
 *
 * Interface names and addresses are per namespace, so every sandbox uses the same ones. The namespaces
 * outlive a worker restart (the listener does not: it is made again on demand) and are removed with
 * the sandbox.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import type { Server } from 'node:net';
import path from 'node:path';
import type { EgressProxyPort } from '../egress/types';
import type { Logger } from '../../workers/log';
import { InvalidSandboxIdError, SANDBOX_ID } from './common';
import type { ListenerMessage } from './gvisor-net-listener';

/** The proxy's address and port as the sandbox sees them (the proxy side of the veth pair). */
export const PROXY_ADDRESS = '10.200.0.1';
export const PROXY_PORT = 3128;
/** The sandbox's own address on the pair; a /30 holds exactly the two. */
export const SANDBOX_ADDRESS = '10.200.0.2';
const PREFIX_LENGTH = 30;
/** The pair's ends: the name tools expect inside the sandbox, and the proxy side's. */
const SANDBOX_IF = 'eth0';
const PROXY_IF = 'veth0';
/** The sandbox's end until the proxy side is complete (see `create`). */
const STAGING_IF = 'sbx0';
/** Where `ip netns` keeps named namespaces (iproute2's compiled-in directory). */
export const NETNS_DIR = '/var/run/netns';
/** Ends the two namespace names; `+` never occurs in a sandbox id, so names parse back unambiguously. */
const SANDBOX_NS_END = '+sandbox';
const PROXY_NS_END = '+proxy';
const IP_TIMEOUT_MS = 10_000;
/** How long the listener helper may take to start and hand over its socket. */
const LISTENER_TIMEOUT_MS = 15_000;
/**
 * Forwarding off on the proxy side: a new namespace may inherit the host's IPv4 setting
 * (`net.core.devconf_inherit_init_net`), so it is written, not assumed. IPv6 may be absent from the kernel.
 */
const PROXY_SYSCTLS =
  'echo 0 > /proc/sys/net/ipv4/ip_forward && { [ ! -e /proc/sys/net/ipv6/conf/all/forwarding ] || echo 0 > /proc/sys/net/ipv6/conf/all/forwarding; }';

/** The URL commands of a networked sandbox reach the egress proxy at. */
export const PROXY_URL = `http://${PROXY_ADDRESS}:${PROXY_PORT}`;

/** Thrown when `ip` or the listener helper fails while a sandbox's network is made or removed. */
export class SandboxNetworkError extends Error {
  override readonly name = 'SandboxNetworkError';
}

/** Dependencies of {@link SandboxNetworks}. */
export interface SandboxNetworksOptions {
  /** The driver's root directory: namespaces carry a key of it, so drivers over different roots never share one. */
  root: string;
  /** The proxy that serves the listeners; without one, namespaces can still be found and removed. */
  proxy?: EgressProxyPort;
  log: Logger;
}

/** Makes, finds and removes the network namespaces of one driver's sandboxes, and their proxy listeners. */
export class SandboxNetworks {
  /** Starts every namespace name of this driver: a short key of its root. */
  private readonly prefix: string;
  private readonly proxy: EgressProxyPort | undefined;
  private readonly log: Logger;
  /** One listener being made at a time per sandbox. */
  private readonly listening = new Map<string, Promise<void>>();

  constructor(opts: SandboxNetworksOptions) {
    this.prefix = `agent-${createHash('sha256').update(path.resolve(opts.root)).digest('hex').slice(0, 8)}+`;
    this.proxy = opts.proxy;
    this.log = opts.log;
  }

  /** The namespace names of sandbox `id`: at most 223 characters, under the 255 `ip netns` takes. */
  names(id: string): { sandbox: string; proxy: string } {
    if (!SANDBOX_ID.test(id)) throw new InvalidSandboxIdError(id);
    return { sandbox: `${this.prefix}${id}${SANDBOX_NS_END}`, proxy: `${this.prefix}${id}${PROXY_NS_END}` };
  }

  /** The path the sandbox's bundle names as its network namespace. */
  sandboxNetnsPath(id: string): string {
    return path.join(NETNS_DIR, this.names(id).sandbox);
  }

  /**
   * Make the namespaces of sandbox `id` unless they are there, and give the sandbox's end its address
   * back (runsc moves it into its netstack, leaving the interface bare): call before every start, never
   * while the sandbox runs (the host's stack would then answer for the sandbox's address). Returns the
   * sandbox namespace's path.
   */
  async prepare(id: string): Promise<string> {
    const { sandbox } = this.names(id);
    const refresh = [`addr replace ${SANDBOX_ADDRESS}/${PREFIX_LENGTH} dev ${SANDBOX_IF}`, `link set ${SANDBOX_IF} up`, 'link set lo up'];
    // The sandbox's end is named `eth0` only once the proxy side is complete, so finding it means the pair is whole.
    const whole = existsSync(path.join(NETNS_DIR, sandbox)) && existsSync(path.join(NETNS_DIR, this.names(id).proxy)) && (await ipBatch(sandbox, refresh).then(() => true, () => false));
    if (!whole) {
      await this.removeNamespaces(id);
      await this.create(id);
    }
    return this.sandboxNetnsPath(id);
  }

  /**
   * Have the proxy serve a listener in the sandbox's proxy side, unless it does already (after a worker
   * restart it does not). Needs the namespaces (`prepare`).
   */
  async ensureServed(id: string): Promise<void> {
    const proxy = this.proxy;
    if (!proxy || proxy.serves(id)) return;
    const pending = this.listening.get(id);
    if (pending) return pending;
    const work = (async () => {
      const started = performance.now();
      const server = await this.listen(id);
      proxy.serveTask(id, server);
      this.log.debug('egress listener made', { sandbox_id: id, ms: Math.round(performance.now() - started) });
    })();
    this.listening.set(id, work);
    try {
      await work;
    } finally {
      this.listening.delete(id);
    }
  }

  /** Stop the proxy serving the sandbox and remove both namespaces; succeeds when they are gone already. */
  async remove(id: string): Promise<void> {
    this.proxy?.release(id);
    await this.removeNamespaces(id);
  }

  /** Ids of sandboxes of this driver with a namespace left. */
  async list(): Promise<string[]> {
    const entries = await fs.readdir(NETNS_DIR).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    const ids = new Set<string>();
    for (const name of entries) {
      if (!name.startsWith(this.prefix)) continue;
      const end = [SANDBOX_NS_END, PROXY_NS_END].find((e) => name.endsWith(e));
      const id = end === undefined ? '' : name.slice(this.prefix.length, -end.length);
      if (SANDBOX_ID.test(id)) ids.add(id);
    }
    return [...ids].sort();
  }

  /**
   * Make both namespaces and the pair. The kernel creates each end of the pair directly in its namespace,
   * so no interface ever exists in the host's; the sandbox's end is renamed `eth0` last, so finding it
   * there means the proxy side is done. Four processes in all: each `ip` batch works in one namespace.
   */
  private async create(id: string): Promise<void> {
    const { sandbox, proxy } = this.names(id);
    try {
      await ipBatch(null, [`netns add ${proxy}`, `netns add ${sandbox}`, `link add ${PROXY_IF} netns ${proxy} type veth peer name ${STAGING_IF} netns ${sandbox}`]);
      await ipBatch(proxy, [
        // No IPv6 link-local addresses: the pair carries IPv4 to one address, nothing else.
        `link set ${PROXY_IF} addrgenmode none`,
        `addr add ${PROXY_ADDRESS}/${PREFIX_LENGTH} dev ${PROXY_IF}`,
        `link set ${PROXY_IF} up`,
        'link set lo up',
      ]);
      await run('ip', ['netns', 'exec', proxy, '/bin/sh', '-c', PROXY_SYSCTLS]);
      await ipBatch(sandbox, [
        `link set ${STAGING_IF} name ${SANDBOX_IF}`,
        `link set ${SANDBOX_IF} addrgenmode none`,
        `addr add ${SANDBOX_ADDRESS}/${PREFIX_LENGTH} dev ${SANDBOX_IF}`,
        `link set ${SANDBOX_IF} up`,
        'link set lo up',
      ]);
    } catch (err) {
      await this.removeNamespaces(id).catch(() => undefined);
      throw err;
    }
  }

  private async removeNamespaces(id: string): Promise<void> {
    const present = Object.values(this.names(id)).filter((name) => existsSync(path.join(NETNS_DIR, name)));
    if (present.length === 0) return;
    await ipBatch(
      null,
      present.map((name) => `netns del ${name}`),
    ).catch((err: unknown) => {
      // Another teardown may have removed one meanwhile; what matters is that none is left.
      if (present.some((name) => existsSync(path.join(NETNS_DIR, name)))) throw err;
    });
  }

  /** Run the listener helper inside the proxy side and receive the socket it listens on. */
  private listen(id: string): Promise<Server> {
    const helper = require.resolve('./gvisor-net-listener');
    const child = spawn('ip', ['netns', 'exec', this.names(id).proxy, process.execPath, helper, PROXY_ADDRESS, String(PROXY_PORT)], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      // Nothing of the worker's environment (NODE_OPTIONS, credentials) reaches the helper.
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    return new Promise<Server>((resolve, reject) => {
      let stderr = '';
      let settled = false;
      const settle = (err: Error | null, server?: Server): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          child.kill('SIGKILL');
          reject(err);
        } else resolve(server!);
      };
      const timer = setTimeout(() => settle(new SandboxNetworkError(`the egress listener of ${id} did not start in ${LISTENER_TIMEOUT_MS} ms`)), LISTENER_TIMEOUT_MS);
      child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-2_000)));
      child.on('message', (msg: ListenerMessage, handle: unknown) => {
        if ('listening' in msg && handle) settle(null, handle as Server);
        else settle(new SandboxNetworkError(`the egress listener of ${id} failed: ${'error' in msg ? msg.error : 'no socket'}`));
      });
      child.once('error', (err) => settle(new SandboxNetworkError(`could not start the egress listener of ${id}: ${err.message}`)));
      // `close` comes after every IPC message was read: a helper that exits without a socket failed.
      child.once('close', (code) => settle(new SandboxNetworkError(`the egress listener of ${id} exited (${code}) without a socket: ${stderr.trim()}`)));
    });
  }
}

/** Run `ip` commands in namespace `ns` (null: the host's) as one batch, one process for all of them. */
function ipBatch(ns: string | null, commands: string[]): Promise<void> {
  return run('ip', [...(ns === null ? [] : ['-n', ns]), '-batch', '-'], `${commands.join('\n')}\n`);
}

function run(cmd: string, args: string[], input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: IP_TIMEOUT_MS, encoding: 'utf8' }, (err, _stdout, stderr) => {
      if (err) reject(new SandboxNetworkError(`${cmd} ${args.slice(0, 4).join(' ')} failed: ${String(stderr).trim() || err.message}`));
      else resolve();
    });
    // `ip` may exit before reading what it was not given: a closed pipe then is no failure of ours.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input);
  });
}

/**
 * The egress proxy as a process of its own, for the cluster: one shared listener that sandbox pods
 * reach, each request naming its task by a signed token (the grant comes from the token), and a
 * report listener for the worker. `node dist/workers/egress-proxy-main.js`
 */
import net from 'node:net';
import { createEgressAdmin } from '../activities/egress/admin';
import { EgressProxy } from '../activities/egress/proxy';
import { identifyByToken } from '../activities/egress/shared';
import { loadEgressProxyConfig } from './egress-proxy-config';
import { createLogger } from './log';

/** Connections the shared listener holds at once, over all tasks. */
const MAX_SHARED_CONNECTIONS = 4_096;

function listen(server: net.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
}

async function main(): Promise<void> {
  const cfg = loadEgressProxyConfig();
  const log = createLogger({ level: cfg.LOG_LEVEL, component: 'egress-proxy' });
  const proxy = new EgressProxy({ hosts: cfg.EGRESS_HOSTS, log });
  const shared = net.createServer();
  shared.maxConnections = MAX_SHARED_CONNECTIONS;
  proxy.serveShared(shared, identifyByToken(proxy, cfg.EGRESS_PROXY_SECRET));
  const admin = createEgressAdmin(proxy, cfg.EGRESS_PROXY_SECRET, log);
  await listen(shared, cfg.EGRESS_PROXY_PORT, cfg.EGRESS_PROXY_HOST);
  await listen(admin, cfg.EGRESS_PROXY_ADMIN_PORT, cfg.EGRESS_PROXY_ADMIN_HOST);
  log.info('egress proxy listening', { port: cfg.EGRESS_PROXY_PORT, admin_port: cfg.EGRESS_PROXY_ADMIN_PORT, operator_hosts: Object.keys(cfg.EGRESS_HOSTS) });
  const stop = () => {
    log.info('egress proxy stopping', {});
    shared.close();
    admin.close();
    setTimeout(() => process.exit(0), 1_000).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

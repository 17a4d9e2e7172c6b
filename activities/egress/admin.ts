/**
 * The cluster egress proxy's report endpoint, on a port of its own that only the worker reaches:
 * `GET /egress/v1/tasks/<id>/report` with `Authorization: Bearer <secret>` answers the task's
 * `take()` as JSON (and resets it); `DELETE /egress/v1/tasks/<id>` forgets an ended task (its
 * exchanges end); `GET /healthz` answers the probes.
 */
import http from 'node:http';
import type { Logger } from '../../workers/log';
import { secretEquals } from './token';
import type { EgressProxyPort } from './types';

const REPORT = /^\/egress\/v1\/tasks\/([A-Za-z0-9._:-]{1,256})\/report$/;
const TASK = /^\/egress\/v1\/tasks\/([A-Za-z0-9._:-]{1,256})$/;

/** The admin server (not listening: the entrypoint listens). */
export function createEgressAdmin(proxy: Pick<EgressProxyPort, 'take' | 'release'>, secret: string, log: Logger): http.Server {
  return http.createServer((req, res) => {
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const path = (req.url ?? '').split('?')[0]!;
    if (req.method === 'GET' && path === '/healthz') return json(200, { ok: true });
    const auth = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    if (!auth || !secretEquals(auth[1]!, secret)) {
      log.warn('egress admin request refused: bad credentials', { path: path.slice(0, 200) });
      return json(401, { error: { code: 'unauthorized', message: 'a bearer token is required' } });
    }
    const report = REPORT.exec(path);
    if (req.method === 'GET' && report) return json(200, proxy.take(report[1]!));
    const task = TASK.exec(path);
    if (req.method === 'DELETE' && task) {
      proxy.release(task[1]!);
      return json(200, { released: task[1] });
    }
    return json(404, { error: { code: 'not_found', message: 'no such route' } });
  });
}

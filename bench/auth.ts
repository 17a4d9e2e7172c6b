/**
 * Cost of authenticating one request, per credential: an API token (a store holding 1,000 tokens, whose
 * file is checked for changes on every request), the local admin token, and a browser session cookie with
 * its CSRF check. Each is timed through the `/v1` authentication middleware itself, in this process.
 *
 *   npm run bench:auth              # 20,000 requests per credential
 */
import os from 'node:os';
import path from 'node:path';
import type { NextFunction, Request, Response } from 'express';
import { authenticate } from '../api/auth/authenticate';
import type { CredentialSource } from '../api/auth/context';
import { csrfGuard } from '../api/auth/csrf';
import { ensureAdminToken, LOCAL_ADMIN, localAdminSource } from '../api/auth/local-admin';
import { ensureSessionSecret, Sessions, sessionSource } from '../api/auth/session';
import { ApiTokenStore, apiTokenSource } from '../api/auth/tokens';
import { tempDir } from '../test/support/git-fixture';
import { summary } from './stats';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 20_000);
/** Tokens in the store besides the one the requests carry. */
const STORE_TOKENS = 1_000;

/** A request as the middleware reads it: headers and a method. */
function request(headers: Record<string, string>, method = 'GET'): Request {
  return { method, headers, get: (name: string) => headers[name.toLowerCase()] } as unknown as Request;
}

/** A response that only holds locals and headers. */
function response(): Response {
  return { locals: {}, set: () => undefined } as unknown as Response;
}

/** Microseconds per request through `steps`, one sample per request. */
async function time(steps: ((req: Request, res: Response, next: NextFunction) => unknown)[], headers: Record<string, string>, method?: string): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const req = request(headers, method);
    const res = response();
    const t0 = process.hrtime.bigint();
    for (const step of steps) {
      let failed: unknown;
      await step(req, res, (err?: unknown) => void (failed = err));
      if (failed) throw failed;
    }
    samples.push(Number(process.hrtime.bigint() - t0) / 1_000);
  }
  return samples;
}

async function main(): Promise<void> {
  const dataDir = path.join(tempDir('bench-auth'), 'data');
  const store = new ApiTokenStore(dataDir);
  for (let i = 0; i < STORE_TOKENS; i++) store.create({ name: `t${i}`, role: 'viewer', teams: ['red'] });
  const { token } = store.create({ name: 'bench', role: 'submitter', teams: ['red'] });
  const admin = await ensureAdminToken(dataDir);
  const sessions = new Sessions(await ensureSessionSecret(dataDir));
  let cookie = '';
  const sid = sessions.start({ cookie: (_n: string, v: string) => void (cookie = v) } as unknown as Response, LOCAL_ADMIN);
  const sources: CredentialSource[] = [apiTokenSource(store), localAdminSource(admin), sessionSource(sessions)];
  const auth = authenticate(sources);
  const csrf = csrfGuard(sessions);

  const rows: [string, number[]][] = [
    ['API token (1,000 in the store)', await time([auth], { authorization: `Bearer ${token}` })],
    ['local admin token', await time([auth], { authorization: `Bearer ${admin}` })],
    ['session cookie, GET', await time([auth, csrf], { cookie: `agent_inbox_session=${cookie}` })],
    ['session cookie + CSRF token, POST', await time([auth, csrf], { cookie: `agent_inbox_session=${cookie}`, 'x-csrf-token': sessions.csrfToken(sid) }, 'POST')],
  ];
  console.log(`# Authentication per request (${REQUESTS} requests each; ${os.cpus().length} cores, ${os.cpus()[0]?.model ?? 'unknown CPU'}, node ${process.version}, ${new Date().toISOString().slice(0, 10)})\n`);
  console.log('| credential | p50 µs | p95 µs | max µs |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const [name, samples] of rows) {
    const s = summary(samples);
    console.log(`| ${name} | ${s.p50} | ${s.p95} | ${s.max} |`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

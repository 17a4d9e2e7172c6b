/**
 * Cost of authenticating one request, per credential: an API token (a store holding 1,000 tokens, whose
 * file is checked for changes on every request), the local admin token, a browser session cookie with
 * its CSRF check, and an identity provider's JWT (RS256, its keys fetched once from a loopback JWKS URL).
 * Each is timed through the `/v1` authentication middleware itself, in this process.
 *
 *   npm run bench:auth              # 20,000 requests per credential
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { NextFunction, Request, Response } from 'express';
import { authenticate } from '../api/auth/authenticate';
import type { CredentialSource } from '../api/auth/context';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { csrfGuard } from '../api/auth/csrf';
import { jwtSource } from '../api/auth/jwt';
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
  const jwks = await serveJwks();
  const sources: CredentialSource[] = [
    apiTokenSource(store),
    localAdminSource(admin),
    jwtSource({ issuer: jwks.issuer, jwksUri: `${jwks.issuer}/jwks`, audience: 'bench', claims: {}, access: { people: { 'ci-bot': { role: 'submitter', teams: ['red'] } }, groups: {} } }),
    sessionSource(sessions),
  ];
  const auth = authenticate(sources);
  const csrf = csrfGuard(sessions);

  const rows: [string, number[]][] = [
    ['API token (1,000 in the store)', await time([auth], { authorization: `Bearer ${token}` })],
    ['local admin token', await time([auth], { authorization: `Bearer ${admin}` })],
    ['session cookie, GET', await time([auth, csrf], { cookie: `agent_inbox_session=${cookie}` })],
    ['session cookie + CSRF token, POST', await time([auth, csrf], { cookie: `agent_inbox_session=${cookie}`, 'x-csrf-token': sessions.csrfToken(sid) }, 'POST')],
    ['identity provider JWT (RS256)', await time([auth], { authorization: `Bearer ${await jwks.token()}` })],
  ];
  jwks.server.close();
  console.log(`# Authentication per request (${REQUESTS} requests each; ${os.cpus().length} cores, ${os.cpus()[0]?.model ?? 'unknown CPU'}, node ${process.version}, ${new Date().toISOString().slice(0, 10)})\n`);
  console.log('| credential | p50 µs | p95 µs | max µs |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const [name, samples] of rows) {
    const s = summary(samples);
    console.log(`| ${name} | ${s.p50} | ${s.p95} | ${s.max} |`);
  }
}

/** A loopback "identity provider" serving one RS256 key at `/jwks`, and a token it signed for the `bench` audience. */
async function serveJwks(): Promise<{ issuer: string; server: http.Server; token(): Promise<string> }> {
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  const body = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'bench', alg: 'RS256', use: 'sig' }] });
  const server = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(body));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const token = () =>
    new SignJWT({ sub: 'ci-bot', jti: 'bench' }).setProtectedHeader({ alg: 'RS256', kid: 'bench' }).setIssuer(issuer).setAudience('bench').setIssuedAt().setExpirationTime('1h').sign(privateKey);
  return { issuer, server, token };
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

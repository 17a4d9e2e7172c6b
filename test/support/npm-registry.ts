/**
 * A real npm registry (verdaccio) on loopback for tests that install dependencies, and a helper that
 * publishes a tiny package to it with npm itself.
 *
 * The registry has no uplinks: a name it does not hold is a 404, never a request that leaves the machine.
 * Its metadata names tarballs by the Host header of the request, so a sandbox that reaches it as
 * `registry.test:<port>` through the egress proxy is sent back to `registry.test:<port>` for the tarball.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { tempDir } from './git-fixture';

/** A running registry; `stop()` closes it and removes its storage. */
export interface NpmRegistry {
  /** `http://127.0.0.1:<port>/`, with the trailing slash npm expects. */
  url: string;
  port: number;
  /** Root of the registry's config and storage (removed by `stop`). */
  dir: string;
  /** A token of the registry's one user, for publishing. */
  token: string;
  stop(): Promise<void>;
}

/** The registry's only account, created through its user API at start-up. */
const PUBLISHER = 'publisher';
/** How long one npm command may run before the test fails with npm's output. */
const NPM_TIMEOUT_MS = 60_000;

/** Start a verdaccio on 127.0.0.1 (a free port), storage in a fresh temp dir, anonymous reads, publishing by its one user. */
export async function startNpmRegistry(): Promise<NpmRegistry> {
  // Loaded here, not at import: verdaccio takes about a second to load, and a support module has no side effects.
  const { runServer } = await import('verdaccio');
  const dir = tempDir('npm-registry');
  const config = {
    self_path: path.join(dir, 'config.yaml'),
    storage: path.join(dir, 'storage'),
    auth: { htpasswd: { file: path.join(dir, 'htpasswd'), max_users: 10 } },
    uplinks: {},
    packages: { '**': { access: '$all', publish: '$authenticated', unpublish: '$authenticated' } },
    web: { enable: false },
    log: { type: 'stdout', format: 'pretty', level: 'error' },
  } as unknown as Parameters<typeof runServer>[0];
  const server = (await runServer(config)) as Server;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const stop = async (): Promise<void> => {
    // npm keeps connections alive; without this, close() waits for them to time out.
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    const { port } = server.address() as AddressInfo;
    const url = `http://127.0.0.1:${port}/`;
    const password = randomBytes(12).toString('hex');
    const res = await fetch(`${url}-/user/org.couchdb.user:${PUBLISHER}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: PUBLISHER, password }),
    });
    const body = (await res.json()) as { token?: string };
    if (res.status !== 201 || !body.token) throw new Error(`creating the registry's user failed: ${res.status} ${JSON.stringify(body)}`);
    return { url, port, dir, token: body.token, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Files of a package to publish (relative path → content); `package.json` is written from name and version. */
export type PackageFiles = Record<string, string>;

/** Publish `name@version` holding `files` to `registry` with `npm publish`, from a temp dir with a throwaway npmrc and cache. */
export async function publishPackage(registry: NpmRegistry, name: string, version: string, files: PackageFiles = {}): Promise<void> {
  const work = tempDir('npm-publish');
  try {
    const pkg = path.join(work, 'package');
    await fs.mkdir(pkg);
    for (const [rel, content] of Object.entries({ 'index.js': 'module.exports = {};\n', ...files })) {
      await fs.mkdir(path.dirname(path.join(pkg, rel)), { recursive: true });
      await fs.writeFile(path.join(pkg, rel), content);
    }
    await fs.writeFile(path.join(pkg, 'package.json'), JSON.stringify({ name, version, main: 'index.js', license: 'MIT' }));
    const npmrc = path.join(work, 'npmrc');
    // npm matches the token by the registry's URL without its scheme.
    await fs.writeFile(npmrc, `//127.0.0.1:${registry.port}/:_authToken=${registry.token}\n`, { mode: 0o600 });
    await npm(['publish', '--registry', registry.url, '--userconfig', npmrc, '--cache', path.join(work, 'cache')], pkg);
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/** Run npm in `cwd` with the caller's npm settings removed, no audit, no fund and no update check; rejects with its output. */
export function npm(args: string[], cwd: string, extraEnv: Record<string, string> = {}): Promise<{ stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = {};
  // Under `npm test` the environment carries the outer npm's settings (npm_config_*); none of them may reach this npm.
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  Object.assign(env, { npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false', ...extraEnv });
  return new Promise((resolve, reject) => {
    execFile('npm', args, { cwd, env, timeout: NPM_TIMEOUT_MS, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`npm ${args[0]} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

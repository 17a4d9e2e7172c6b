/**
 * How the worker reaches a task's repository: the repository rules checked (symlinks resolved) before every
 * clone, ls-remote and push; only that remote's protocol enabled; a local target reached through an
 * upload-pack/receive-pack that runs none of its hooks; credentials only from the worker's own file, or from
 * its own source (a forge's short-lived token) through a credential-store file of the call's own.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_REPO_ALLOW, protocolOf, resolveRepo, type RepoLocation, type RepoRules } from '../../domain/repo-policy';
import { InvalidGitArgumentError, type GitCallOptions } from './runner';

/** What an operation that reaches a remote needs besides the signal. */
export interface RemoteOptions extends GitCallOptions {
  /** Which repositories may be reached (default: https and ssh remotes, local repositories under the temp directory). */
  rules?: RepoRules;
  /** A git-credential-store file (`https://user:token@host` lines) the worker's own git reads, never writes, for http(s) remotes. */
  credentialsFile?: string;
  /** The worker's own credential for an http(s) remote (a forge's token); when it has one, `credentialsFile` is not asked. */
  credentials?: GitCredentials;
  /** Replaces the `GIT_TIMEOUT_MS` figure of this call. */
  timeoutMs?: number;
}

/** What the worker's git presents to an http(s) remote that asks for a credential. */
export interface GitCredential {
  username: string;
  password: string;
}

/** The worker's credential for the remote at `url`, or null when it holds none for it; throws {@link GitCredentialsError}. */
export type GitCredentials = (url: string) => Promise<GitCredential | null>;

/** Thrown when the credential for a remote could not be had (a forge refused the worker's key); the message says what to check and holds no secret. */
export class GitCredentialsError extends Error {
  override readonly name = 'GitCredentialsError';
  /** Whether asking again can succeed (the forge was unreachable or failed), as opposed to a refusal. */
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean) {
    super(message);
    this.retryable = retryable;
  }
}

/** The rules a remote operation applies when its caller names none. */
export function defaultRepoRules(): RepoRules {
  return { allow: DEFAULT_REPO_ALLOW, localRoots: [os.tmpdir()], forbidden: [] };
}

// The upload-pack/receive-pack run in a local target repository. Config of the pushing side never reaches them (git clears
// it for local transports), so it is set on their own command line, which wins over the target's config: no hooks
// (pre-receive, update, post-receive, post-update, reference-transaction, push-to-checkout; a ref the target routes
// to proc-receive finds no hook and is refused), no auto gc, no command for alternates' refs, no checkout into a work tree.
const PACK_CONFIG = [
  '-c core.hooksPath=/dev/null',
  '-c core.fsmonitor=false',
  '-c core.alternateRefsCommand=true',
  '-c receive.autogc=false',
  '-c receive.denyCurrentBranch=refuse',
].join(' ');
const UPLOAD_PACK = `--upload-pack=git ${PACK_CONFIG} upload-pack`;
const RECEIVE_PACK = `--receive-pack=git ${PACK_CONFIG} receive-pack`;

/** A remote that passed the rules: what git is given, and the settings and pack program for reaching it. */
export interface Target {
  url: string;
  config: string[];
  /** `--upload-pack`/`--receive-pack` for a local target, nothing for a real remote (its hooks are its server's). */
  uploadPack: string[];
  receivePack: string[];
  /** Removes what the call needed on disk (the credential file of a {@link GitCredentials} credential); call it once git is done. */
  release(): Promise<void>;
}

const NOTHING_TO_RELEASE = async (): Promise<void> => undefined;

/** The credential-store helper reading `file`: only `get` reaches credential-store, whose `store` and `erase` would rewrite it. */
function storeHelper(file: string): string {
  return `!f() { test "$1" = get || exit 0; exec git credential-store --file=${shellQuote(file)} get; }; f`;
}

/** Check `remote` against the rules (symlinks resolved) and build what reaching it takes. */
export async function target(remote: string, opts: RemoteOptions): Promise<Target> {
  checkRemote(remote);
  const loc: RepoLocation = await resolveRepo(remote, opts.rules ?? defaultRepoRules(), (p) => fs.realpath(p));
  const config = ['-c', `protocol.${protocolOf(loc)}.allow=always`];
  if (loc.kind === 'local') return { url: loc.path, config, uploadPack: [UPLOAD_PACK], receivePack: [RECEIVE_PACK], release: NOTHING_TO_RELEASE };
  const remoteTarget = { url: loc.url, config, uploadPack: [], receivePack: [], release: NOTHING_TO_RELEASE };
  if (loc.scheme !== 'https' && loc.scheme !== 'http') return remoteTarget;
  const own = opts.credentials === undefined ? null : await opts.credentials(loc.url);
  if (own !== null) {
    // The same helper over a file of this call's own, in a directory only the worker reads, outside DATA_DIR (which
    // sandboxes see) and removed when git is done: the token is on no command line, in no environment, in no config.
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), CREDENTIALS_DIR_PREFIX));
    try {
      const file = path.join(dir, 'credentials');
      const origin = new URL(loc.url);
      const line = `${origin.protocol}//${encodeURIComponent(own.username)}:${encodeURIComponent(own.password)}@${origin.host}\n`;
      await fs.writeFile(file, line, { mode: 0o600, flag: 'wx' });
      // The empty value first drops any helper of the operator's git configuration: this credential is the one.
      config.push('-c', 'credential.helper=', '-c', `credential.helper=${storeHelper(file)}`);
    } catch (err) {
      await fs.rm(dir, { recursive: true, force: true });
      throw err;
    }
    return { ...remoteTarget, release: () => fs.rm(dir, { recursive: true, force: true }) };
  }
  if (opts.credentialsFile) {
    // A helper for this call only: the token is read from the worker's file and never written to a repository's config.
    config.push('-c', `credential.helper=${storeHelper(opts.credentialsFile)}`);
  }
  return remoteTarget;
}

/** Prefix of the directories holding one call's credential file under the system temp directory. */
const CREDENTIALS_DIR_PREFIX = 'agent-inbox-git-credential-';

/** Single-quote `s` for the shell git runs a credential helper through. */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Refuse a remote git would read as an option. */
function checkRemote(remote: string): string {
  if (remote === '' || remote.startsWith('-') || remote.includes('\0')) throw new InvalidGitArgumentError('remote', remote);
  return remote;
}

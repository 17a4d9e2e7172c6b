/**
 * How the worker reaches a task's repository: the repository rules checked (symlinks resolved) before every
 * clone, ls-remote and push; only that remote's protocol enabled; a local target reached through an
 * upload-pack/receive-pack that runs none of its hooks; credentials only from the worker's own file.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import { DEFAULT_REPO_ALLOW, protocolOf, resolveRepo, type RepoLocation, type RepoRules } from '../../domain/repo-policy';
import { InvalidGitArgumentError, type GitCallOptions } from './runner';

/** What an operation that reaches a remote needs besides the signal. */
export interface RemoteOptions extends GitCallOptions {
  /** Which repositories may be reached (default: https and ssh remotes, local repositories under the temp directory). */
  rules?: RepoRules;
  /** A git-credential-store file (`https://user:token@host` lines) the worker's own git reads, never writes, for http(s) remotes. */
  credentialsFile?: string;
  /** Replaces the `GIT_TIMEOUT_MS` figure of this call. */
  timeoutMs?: number;
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
}

/** Check `remote` against the rules (symlinks resolved) and build what reaching it takes. */
export async function target(remote: string, opts: RemoteOptions): Promise<Target> {
  checkRemote(remote);
  const loc: RepoLocation = await resolveRepo(remote, opts.rules ?? defaultRepoRules(), (p) => fs.realpath(p));
  const config = ['-c', `protocol.${protocolOf(loc)}.allow=always`];
  if (loc.kind === 'local') return { url: loc.path, config, uploadPack: [UPLOAD_PACK], receivePack: [RECEIVE_PACK] };
  if (opts.credentialsFile && (loc.scheme === 'https' || loc.scheme === 'http')) {
    // A helper for this call only: the token is read from the worker's file and never written to a repository's config.
    // Only `get` reaches credential-store: its `store` and `erase` would rewrite the operator's file (a refused token deleted).
    const file = shellQuote(opts.credentialsFile);
    config.push('-c', `credential.helper=!f() { test "$1" = get || exit 0; exec git credential-store --file=${file} get; }; f`);
  }
  return { url: loc.url, config, uploadPack: [], receivePack: [] };
}

/** Single-quote `s` for the shell git runs a credential helper through. */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Refuse a remote git would read as an option. */
function checkRemote(remote: string): string {
  if (remote === '' || remote.startsWith('-') || remote.includes('\0')) throw new InvalidGitArgumentError('remote', remote);
  return remote;
}

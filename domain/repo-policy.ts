/**
 * Which repositories a task may name: the rules over a task's `repo` string that the API applies at
 * intake and the worker applies again before every clone, ls-remote and push.
 *
 * Pure module: no Node built-ins. The one piece of I/O the rules need, resolving symlinks, is handed
 * in by the caller ({@link resolveRepo}), so the API and the worker share one implementation.
 */

/** Remote URL schemes git may use for a task's repository; anything else (`ext::`, `fd::`, `git+ssh://`) is refused. */
export const REMOTE_SCHEMES = ['https', 'http', 'ssh', 'git'] as const;
/** One of {@link REMOTE_SCHEMES}. */
export type RemoteScheme = (typeof REMOTE_SCHEMES)[number];

/** Default of `REPO_ALLOW`: any https or ssh remote. */
export const DEFAULT_REPO_ALLOW: readonly string[] = ['https://**', 'ssh://**'];

/** What a repository must satisfy; paths are absolute. */
export interface RepoRules {
  /** Globs over the normalized URL of a remote (`*` within a path segment, `**` across segments, `?` one character). */
  allow: readonly string[];
  /** Directories a local repository must be inside, after symlinks are resolved. */
  localRoots: readonly string[];
  /** Directories no local repository may be in or be: the data directory of the backend. */
  forbidden: readonly string[];
}

/** Which rule refused a repository; the API's 400 and the worker's failure name it. */
export type RepoRule = 'syntax' | 'credentials' | 'transport' | 'REPO_ALLOW' | 'REPO_LOCAL_ROOTS' | 'DATA_DIR';

/** Thrown when a `repo` breaks a rule; the message says which rule and what to do instead. */
export class RepoRefusedError extends Error {
  override readonly name = 'RepoRefusedError';
  constructor(
    readonly rule: RepoRule,
    message: string,
  ) {
    super(message);
  }
}

/** A repository git may reach: a remote by URL, or a local repository by its real path. */
export type RepoLocation =
  | { kind: 'remote'; scheme: RemoteScheme; /** What git is given. */ url: string; /** What `REPO_ALLOW` is matched against: no user name. */ normalized: string }
  | { kind: 'local'; /** Absolute, symlinks resolved when it came from {@link resolveRepo}. */ path: string };

/** The git transport protocol (as in `protocol.<name>.allow`) a location needs. */
export function protocolOf(loc: RepoLocation): RemoteScheme | 'file' {
  return loc.kind === 'local' ? 'file' : loc.scheme;
}

const HELPER_TRANSPORT = /^[A-Za-z0-9][A-Za-z0-9+.-]*::/;
const URL_SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;
// git reads `[user@]host:path` as ssh when no slash comes before the first colon.
const SCP_LIKE = /^(?:([^@/:]+)@)?([^/:@]+):(.*)$/;
const CONTROL = /[\u0000-\u001f\u007f]/;
// Encoded dots and slashes could be decoded by a server after the allowlist matched the encoded form.
const ENCODED_SEPARATOR = /%2e|%2f|%5c/i;
const CREDENTIALS_HINT = 'put no credentials in the repository URL: the worker supplies them to its own git from GIT_CREDENTIALS_FILE, or GitHub access for GITHUB_GIT_BASE';

/** Parse `repo` into a location without touching the file system; throws {@link RepoRefusedError} for a malformed or unsupported one. */
export function parseRepo(repo: string): RepoLocation {
  if (repo === '' || CONTROL.test(repo)) throw new RepoRefusedError('syntax', 'repo: must be a non-empty URL or path without control characters');
  if (repo.startsWith('-')) throw new RepoRefusedError('syntax', 'repo: must not start with "-"');
  if (HELPER_TRANSPORT.test(repo)) {
    throw new RepoRefusedError('transport', `repo: remote-helper transports ("<transport>::<address>") are not allowed; use ${REMOTE_SCHEMES.join(', ')} or a local path`);
  }
  const scheme = URL_SCHEME.exec(repo)?.[1]?.toLowerCase();
  if (scheme !== undefined) return scheme === 'file' ? parseFileUrl(repo) : parseUrl(repo, scheme);
  if (repo.startsWith('/')) return { kind: 'local', path: normalizePath(repo) };
  const scp = SCP_LIKE.exec(repo);
  if (scp) {
    const host = scp[2]!;
    const rest = scp[3]!;
    checkNotOption(scp[1] ?? '', host);
    // "user:password@host:path" parses as host "user"; an "@" left in the path is a credential in disguise.
    if (rest.includes('@')) throw new RepoRefusedError('credentials', `repo: ${CREDENTIALS_HINT}`);
    checkSegments(rest);
    // Matched as the ssh:// URL it stands for; git is given the text as written (its path is relative to the login's home).
    return { kind: 'remote', scheme: 'ssh', url: repo, normalized: `ssh://${host.toLowerCase()}${rest.startsWith('/') ? '' : '/'}${rest}` };
  }
  throw new RepoRefusedError('syntax', 'repo: a local repository must be an absolute path (or a file:// URL)');
}

function parseUrl(repo: string, scheme: string): RepoLocation {
  if (!(REMOTE_SCHEMES as readonly string[]).includes(scheme)) {
    throw new RepoRefusedError('transport', `repo: the ${scheme}:// transport is not allowed; use ${REMOTE_SCHEMES.join(', ')} or a local path`);
  }
  let u: URL;
  try {
    u = new URL(repo);
  } catch {
    throw new RepoRefusedError('syntax', 'repo: not a valid URL');
  }
  // ssh names its login user in the URL (git@host); every other user name or password there is a credential.
  if (u.password !== '' || (u.username !== '' && scheme !== 'ssh')) throw new RepoRefusedError('credentials', `repo: ${CREDENTIALS_HINT}`);
  if (u.hostname === '') throw new RepoRefusedError('syntax', 'repo: the URL names no host');
  checkNotOption(u.username.replace(/^%2d/i, '-'), u.hostname);
  if (u.search !== '' || u.hash !== '') throw new RepoRefusedError('syntax', 'repo: a repository URL has no query or fragment');
  // The raw text, not u.pathname: WHATWG parsing has already folded "..", which git and the server might not.
  const rawPath = repo.slice(repo.indexOf('://') + 3).replace(/^[^/]*/, '');
  checkSegments(rawPath);
  const host = u.host.toLowerCase();
  const path = u.pathname === '' ? '/' : u.pathname;
  const user = u.username === '' ? '' : `${u.username}@`;
  return { kind: 'remote', scheme: scheme as RemoteScheme, url: `${scheme}://${user}${host}${path}`, normalized: `${scheme}://${host}${path}` };
}

function parseFileUrl(repo: string): RepoLocation {
  let u: URL;
  try {
    u = new URL(repo);
  } catch {
    throw new RepoRefusedError('syntax', 'repo: not a valid file:// URL');
  }
  if ((u.hostname !== '' && u.hostname !== 'localhost') || u.username !== '' || u.password !== '') {
    throw new RepoRefusedError('syntax', 'repo: a file:// URL names a path on this machine, no host or user');
  }
  if (u.search !== '' || u.hash !== '') throw new RepoRefusedError('syntax', 'repo: a repository URL has no query or fragment');
  let decoded: string;
  try {
    decoded = decodeURIComponent(u.pathname);
  } catch {
    throw new RepoRefusedError('syntax', 'repo: not a valid file:// URL');
  }
  if (CONTROL.test(decoded)) throw new RepoRefusedError('syntax', 'repo: must be a non-empty URL or path without control characters');
  return { kind: 'local', path: normalizePath(decoded) };
}

/** ssh would read a user or host that starts with "-" as an option (`-oProxyCommand=…`). */
function checkNotOption(user: string, host: string): void {
  if (user.startsWith('-') || host.startsWith('-')) throw new RepoRefusedError('syntax', 'repo: a user or host name must not start with "-"');
}

function checkSegments(path: string): void {
  if (ENCODED_SEPARATOR.test(path) || path.split(/[/\\]/).some((s) => s === '.' || s === '..')) {
    throw new RepoRefusedError('syntax', 'repo: the path must not contain "." or ".." segments or encoded separators');
  }
}

/** `p` made absolute-looking and lexically clean: no empty, "." or ".." segments, no trailing slash. */
export function normalizePath(p: string): string {
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return `/${out.join('/')}`;
}

/** Whether `p` is `dir` or inside it (both absolute and normalized). */
export function isWithin(p: string, dir: string): boolean {
  return dir === '/' || p === dir || p.startsWith(`${dir}/`);
}

/** A glob of `REPO_ALLOW` as an anchored regular expression. */
export function globToRegExp(glob: string): RegExp {
  let src = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      src += '.*';
      i++;
    } else if (c === '*') src += '[^/]*';
    else if (c === '?') src += '[^/]';
    else src += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${src}$`, 'i');
}

/** Check a parsed location against the rules; local paths must already be real paths. Throws {@link RepoRefusedError}. */
export function checkLocation(loc: RepoLocation, rules: RepoRules): void {
  if (loc.kind === 'remote') {
    if (!rules.allow.some((g) => globToRegExp(g).test(loc.normalized))) {
      throw new RepoRefusedError('REPO_ALLOW', `repo: ${loc.normalized} matches none of REPO_ALLOW (${rules.allow.join(', ') || 'empty'})`);
    }
    return;
  }
  if (rules.forbidden.some((d) => isWithin(loc.path, d) || isWithin(d, loc.path))) {
    throw new RepoRefusedError('DATA_DIR', 'repo: a local repository may not be in (or contain) the backend\'s DATA_DIR, where working copies live');
  }
  if (!rules.localRoots.some((d) => isWithin(loc.path, d))) {
    throw new RepoRefusedError(
      'REPO_LOCAL_ROOTS',
      `repo: a local repository must be under one of REPO_LOCAL_ROOTS (${rules.localRoots.join(', ') || 'none: local repositories are disabled'}), symlinks resolved`,
    );
  }
}

/** Resolves an absolute path's symlinks, rejecting (e.g. ENOENT) when it does not exist. */
export type Realpath = (p: string) => Promise<string>;

/** `p` with symlinks resolved as far as it exists; the missing rest is appended as written. */
export async function realPathOf(p: string, realpath: Realpath): Promise<string> {
  const abs = normalizePath(p);
  const parts = abs.split('/').filter(Boolean);
  for (let n = parts.length; n >= 0; n--) {
    const head = `/${parts.slice(0, n).join('/')}`;
    let real: string;
    try {
      real = await realpath(head);
    } catch {
      continue;
    }
    return normalizePath([real, ...parts.slice(n)].join('/'));
  }
  return abs;
}

/**
 * Parse `repo`, resolve a local path's symlinks (and those of the rules' directories), and check it
 * against `rules`. Returns the location to hand git: a local repository by its real path.
 */
export async function resolveRepo(repo: string, rules: RepoRules, realpath: Realpath): Promise<RepoLocation> {
  const loc = parseRepo(repo);
  if (loc.kind === 'remote') {
    checkLocation(loc, rules);
    return loc;
  }
  const real = async (dirs: readonly string[]): Promise<string[]> => Promise.all(dirs.map((d) => realPathOf(d, realpath)));
  const resolved: RepoLocation = { kind: 'local', path: await realPathOf(loc.path, realpath) };
  checkLocation(resolved, { allow: rules.allow, localRoots: await real(rules.localRoots), forbidden: await real(rules.forbidden) });
  return resolved;
}

/**
 * Egress allowlists: what an entry may be (a domain, a `*.` wildcard or a named preset), how presets
 * expand, which host names a list admits, and how the operator's ceiling, the task's list and the
 * repository's list combine (each can only narrow the others).
 *
 * Pure module: no Node built-ins. The API validates entries with it at intake, the workflow computes
 * each phase's allowlist with it, and the worker and its proxy apply it again to every request.
 */

/**
 * Named sets of the domains package managers and code hosts use, for `EGRESS_ALLOW`, a task's
 * `egress_allowlist` and a repository's `.agent/policy.yaml`.
 */
export const EGRESS_PRESETS: Readonly<Record<string, readonly string[]>> = {
  npm: ['registry.npmjs.org', 'registry.npmjs.com', 'registry.yarnpkg.com'],
  pypi: ['pypi.org', 'files.pythonhosted.org', 'pypi.python.org'],
  crates: ['crates.io', 'index.crates.io', 'static.crates.io'],
  go: ['proxy.golang.org', 'sum.golang.org', 'index.golang.org'],
  maven: ['repo.maven.apache.org', 'repo1.maven.org', 'plugins.gradle.org'],
  debian: ['deb.debian.org', 'security.debian.org'],
  github: ['github.com', 'api.github.com', 'codeload.github.com', '*.githubusercontent.com'],
};

/** The presets that are package registries: a setup phase may use those of them the operator enabled, unless told otherwise. */
export const REGISTRY_PRESETS: readonly string[] = ['npm', 'pypi', 'crates', 'go', 'maven', 'debian'];

/** One request the proxy refused. */
export interface BlockedRequest {
  host: string;
  port: number;
  /** ISO time of the (first) refusal. */
  at: string;
  step: string;
  /** Why, in words a reviewer understands: `not in the task's allowlist`, `private address`, `TLS name mismatch`, … */
  reason: string;
  /** Refusals of the same host, port, step and reason folded into this one. */
  count: number;
}

/** Longest domain name (RFC 1035). */
const MAX_DOMAIN_CHARS = 253;
const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** Why an allowlist entry is not one, or null when it is. */
export function egressEntryError(entry: string): string | null {
  if (Object.hasOwn(EGRESS_PRESETS, entry)) return null;
  const name = entry.startsWith('*.') ? entry.slice(2) : entry;
  if (name !== name.toLowerCase()) return `"${entry}": write domains in lower case`;
  if (name.length === 0 || name.length > MAX_DOMAIN_CHARS) return `"${entry}": not a domain name`;
  if (IPV4.test(name) || name.includes(':')) return `"${entry}": name a domain, not an address (the operator maps names to addresses with EGRESS_HOSTS)`;
  if (name.includes('*')) return `"${entry}": a wildcard is allowed only as a leading "*." (e.g. "*.example.com")`;
  const labels = name.split('.');
  if (labels.some((l) => !LABEL.test(l))) return `"${entry}": not a domain name (letters, digits, "-" and "_" in dot-separated labels; internationalized names in their xn-- form)`;
  if (entry.startsWith('*.') && labels.length < 2) return `"${entry}": a wildcard must keep at least two labels (e.g. "*.example.com")`;
  return null;
}

/** A host name as the proxy compares it: lower case, without a trailing dot. */
export function normalizeHost(host: string): string {
  return host.toLowerCase().replace(/\.$/, '');
}

/** The domain patterns of a list: presets replaced by their domains, duplicates removed, order kept. Invalid entries are dropped. */
export function expandEgress(entries: readonly string[]): string[] {
  const out = new Set<string>();
  for (const e of entries) {
    if (egressEntryError(e) !== null) continue;
    for (const p of EGRESS_PRESETS[e] ?? [e]) out.add(p);
  }
  return [...out];
}

/** Whether pattern `p` (a domain or `*.domain`) admits every host pattern `q` admits. */
export function covers(p: string, q: string): boolean {
  if (!p.startsWith('*.')) return p === q;
  const suffix = p.slice(1);
  // `*.example.com` admits the names below example.com, not example.com itself.
  return q.endsWith(suffix) && q.length > suffix.length;
}

/** Whether `host` is admitted by one of the (expanded) patterns. */
export function hostAllowed(host: string, patterns: readonly string[]): boolean {
  const h = normalizeHost(host);
  return patterns.some((p) => covers(p, h));
}

/**
 * The hosts every list admits, as patterns: the intersection of the lists (presets expanded). An
 * exact name survives where each list admits it; a wildcard survives as the narrower of two wildcards.
 */
export function intersectEgress(first: readonly string[], ...rest: (readonly string[])[]): string[] {
  let acc = expandEgress(first);
  for (const list of rest) {
    const other = expandEgress(list);
    const next = new Set<string>();
    for (const a of acc) {
      for (const b of other) {
        if (covers(b, a)) next.add(a);
        else if (covers(a, b)) next.add(b);
      }
    }
    acc = [...next];
  }
  return acc;
}

/** The registry presets of the operator's ceiling: the default allowlist of a setup phase. */
export function registryPresetsOf(ceiling: readonly string[]): string[] {
  return REGISTRY_PRESETS.filter((p) => ceiling.includes(p));
}

/** What the task's view shows of its network: the allowlists in force, the grants, and what was refused. */
export interface EgressView {
  /** The operator's ceiling (EGRESS_ALLOW) as the worker reported it. */
  ceiling: string[];
  /** Host patterns of the setup phase and of the planner's phase, grants included. */
  setup_allowlist: string[];
  allowlist: string[];
  /** Domains a human allowed for this task, and in which phase. */
  granted: { domain: string; phase: 'setup' | 'planner'; actor: string }[];
  /** Refused requests (bounded; `blocked_count` counts all). */
  blocked: BlockedRequest[];
  blocked_count: number;
  allowed_count: number;
}

/** The setup phase's allowlist: what was asked (default: the ceiling's registry presets), within the ceiling and the repository's setup list. */
export function setupAllowlist(ceiling: readonly string[], requested: readonly string[] | undefined, repo: readonly string[] | undefined): string[] {
  const lists = [ceiling, requested ?? registryPresetsOf(ceiling)];
  if (repo !== undefined) lists.push(repo);
  return intersectEgress(lists[0]!, ...lists.slice(1));
}

/** The planner phase's allowlist: the task's, within the ceiling and the repository's list (when it has one). */
export function plannerAllowlist(ceiling: readonly string[], taskList: readonly string[], repoList: readonly string[] | undefined): string[] {
  return repoList === undefined ? intersectEgress(ceiling, taskList) : intersectEgress(ceiling, taskList, repoList);
}

/** Hosts among `hosts` a human may allow for a task: inside the ceiling, and not admitted already (refused for another reason then). */
export function grantableHosts(ceiling: readonly string[], allow: readonly string[], hosts: readonly string[]): string[] {
  const top = expandEgress(ceiling);
  return [...new Set(hosts.map(normalizeHost))].filter((h) => egressEntryError(h) === null && hostAllowed(h, top) && !hostAllowed(h, allow));
}

/**
 * GitHub's REST description trimmed to the operations the project calls, cached on disk.
 *
 * The full description is 13 MB and Prism needs tens of seconds to load it; the operations below and the
 * components they reference load in about a second.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../stack';

/** One REST operation: lower-case HTTP method and the path template exactly as the description spells it. */
export interface Operation {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  path: string;
}

/** The operations the fake serves; the trimmed description holds these and nothing else, so Prism refuses the rest. */
export const OPERATIONS: readonly Operation[] = [
  { method: 'get', path: '/user' },
  { method: 'get', path: '/app' },
  { method: 'get', path: '/repos/{owner}/{repo}' },
  { method: 'get', path: '/repos/{owner}/{repo}/pulls' },
  { method: 'post', path: '/repos/{owner}/{repo}/pulls' },
  { method: 'get', path: '/repos/{owner}/{repo}/pulls/{pull_number}' },
  { method: 'patch', path: '/repos/{owner}/{repo}/pulls/{pull_number}' },
  { method: 'put', path: '/repos/{owner}/{repo}/pulls/{pull_number}/merge' },
  { method: 'get', path: '/repos/{owner}/{repo}/commits/{ref}/check-runs' },
  { method: 'post', path: '/repos/{owner}/{repo}/check-runs' },
  { method: 'patch', path: '/repos/{owner}/{repo}/check-runs/{check_run_id}' },
  { method: 'get', path: '/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations' },
  { method: 'post', path: '/repos/{owner}/{repo}/statuses/{sha}' },
  { method: 'get', path: '/repos/{owner}/{repo}/collaborators/{username}/permission' },
  { method: 'get', path: '/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}' },
  { method: 'get', path: '/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments' },
  { method: 'get', path: '/repos/{owner}/{repo}/pulls/{pull_number}/comments' },
  { method: 'get', path: '/repos/{owner}/{repo}/issues/{issue_number}/comments' },
  { method: 'post', path: '/repos/{owner}/{repo}/issues/{issue_number}/comments' },
  { method: 'patch', path: '/repos/{owner}/{repo}/issues/comments/{comment_id}' },
  { method: 'get', path: '/repos/{owner}/{repo}/issues/{issue_number}/labels' },
  { method: 'post', path: '/repos/{owner}/{repo}/issues/{issue_number}/labels' },
  { method: 'delete', path: '/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}' },
  { method: 'delete', path: '/repos/{owner}/{repo}/git/refs/{ref}' },
  { method: 'get', path: '/repos/{owner}/{repo}/installation' },
  { method: 'post', path: '/app/installations/{installation_id}/access_tokens' },
];

/** A JSON value as the description holds it. */
type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const PACKAGE_DIR = path.join(REPO_ROOT, 'node_modules', '@octokit', 'openapi');
const FULL_SPEC = path.join(PACKAGE_DIR, 'generated', 'api.github.com.json');
const CACHE_DIR = path.join(REPO_ROOT, '.cache', 'github-openapi');
const COMPONENT_REF = /^#\/components\/([^/]+)\/(.+)$/;
/** Bumped whenever trimming changes what it writes, so a cached file from an older trim is not reused. */
const TRIM_REVISION = 3;

/** Copies `operations` and every component they reference, transitively, out of a full description. */
export function trimSpec(full: Json, operations: readonly Operation[]): Json {
  const paths: Json = {};
  for (const op of operations) {
    const item = full.paths[op.path];
    if (item?.[op.method] === undefined) throw new Error(`the description has no ${op.method.toUpperCase()} ${op.path}`);
    paths[op.path] ??= item.parameters === undefined ? {} : { parameters: item.parameters };
    paths[op.path][op.method] = item[op.method];
  }
  const components: Json = {};
  const pending: Json[] = [paths];
  const seen = new Set<string>();
  while (pending.length > 0) {
    for (const ref of refsIn(pending.pop())) {
      if (seen.has(ref)) continue;
      seen.add(ref);
      const match = COMPONENT_REF.exec(ref);
      if (match === null) throw new Error(`unsupported reference ${ref}`);
      const [, kind, name] = match;
      const target = full.components?.[kind]?.[name];
      if (target === undefined) throw new Error(`dangling reference ${ref}`);
      (components[kind] ??= {})[name] = target;
      pending.push(target);
    }
  }
  return makeNullableUnionsCompile(structuredClone({ openapi: full.openapi, info: full.info, servers: full.servers, paths, components }));
}

/**
 * Rewrites `{nullable: true, anyOf|oneOf: [...]}` without a `type` (GitHub's installation `account`) to the same
 * union plus a null branch. Ajv refuses to compile `nullable` without `type`, and Prism then treats the whole
 * response as valid without a word; rewritten, the response is checked like every other.
 */
function makeNullableUnionsCompile(node: Json): Json {
  if (Array.isArray(node)) node.forEach(makeNullableUnionsCompile);
  else if (node !== null && typeof node === 'object') {
    const union = Array.isArray(node.anyOf) ? 'anyOf' : Array.isArray(node.oneOf) ? 'oneOf' : undefined;
    if (node.nullable === true && node.type === undefined && union !== undefined) {
      delete node.nullable;
      node[union] = [...node[union], NULL_ONLY];
    }
    Object.values(node).forEach(makeNullableUnionsCompile);
  }
  return node;
}

/** An OpenAPI 3.0 schema that admits null and nothing else (Prism's conversion duplicates an `enum: [null]`, which Ajv refuses). */
const NULL_ONLY = { type: 'object', nullable: true, not: { type: 'object' } };

/** Every `$ref` string anywhere inside `node`. */
function refsIn(node: Json, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const item of node) refsIn(item, out);
  else if (node !== null && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string') out.push(value);
      else refsIn(value, out);
    }
  }
  return out;
}

/** The trimmed description and the file it is cached in. */
export interface TrimmedSpec {
  file: string;
  spec: Json;
}

/** Loads the trimmed description from the cache, writing it first when the package or the operation list changed. */
export function loadTrimmedSpec(operations: readonly Operation[] = OPERATIONS): TrimmedSpec {
  const version = (JSON.parse(fs.readFileSync(path.join(PACKAGE_DIR, 'package.json'), 'utf8')) as { version: string }).version;
  const key = crypto.createHash('sha256').update(JSON.stringify({ version, revision: TRIM_REVISION, operations })).digest('hex');
  const file = path.join(CACHE_DIR, `${key}.json`);
  if (fs.existsSync(file)) return { file, spec: JSON.parse(fs.readFileSync(file, 'utf8')) };
  const spec = trimSpec(JSON.parse(fs.readFileSync(FULL_SPEC, 'utf8')), operations);
  fs.mkdirSync(CACHE_DIR, { recursive: true });
  // Written under a temporary name and renamed so a concurrent reader never sees half a file.
  const partial = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(partial, JSON.stringify(spec));
  fs.renameSync(partial, file);
  return { file, spec };
}

/** The example body of an operation's first success response, deep-cloned, for the fake to fill in with its state. */
export function successExample(spec: Json, op: Operation): Json {
  const responses = spec.paths[op.path][op.method].responses as Record<string, Json>;
  const status = Object.keys(responses).filter((code) => /^2\d\d$/.test(code)).sort()[0];
  if (status === undefined) throw new Error(`${op.method.toUpperCase()} ${op.path} has no success response`);
  const response = resolve(spec, responses[status]);
  const examples = response.content?.['application/json']?.examples as Record<string, Json> | undefined;
  const first = examples === undefined ? undefined : Object.values(examples)[0];
  if (first === undefined) throw new Error(`${op.method.toUpperCase()} ${op.path} has no example for ${status}`);
  return structuredClone(resolve(spec, first).value);
}

/** Follows a component `$ref` (repeatedly) to the object it names. */
export function resolve(spec: Json, node: Json): Json {
  while (node?.$ref !== undefined) {
    const [, kind, name] = COMPONENT_REF.exec(node.$ref as string) ?? [];
    node = spec.components[kind][name];
  }
  return node;
}

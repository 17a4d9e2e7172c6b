/**
 * A repository's own policy file, `.agent/policy.yaml`, read from its base commit.
 */
import { ApplicationFailure } from '@temporalio/common';
import YAML from 'yaml';
import { RepoPolicy } from '../domain/task';
import { activityFailure } from './failures';

export const POLICY_FILE = '.agent/policy.yaml';
/** The largest policy file read. */
const POLICY_MAX_BYTES = 64 * 1024;

/** Parse `.agent/policy.yaml` text; null when the repo has none, a non-retryable failure naming the problem when invalid. */
export function parseRepoPolicy(text: string | null): RepoPolicy | null {
  if (text === null) return null;
  const invalid = (why: string, details?: unknown[]): ApplicationFailure =>
    activityFailure('InvalidRepoPolicy', `${POLICY_FILE}: ${why}`, { details });
  if (Buffer.byteLength(text, 'utf8') > POLICY_MAX_BYTES) throw invalid(`larger than ${POLICY_MAX_BYTES} bytes`);
  const doc = YAML.parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) throw invalid(`not valid YAML: ${doc.errors[0]!.message}`);
  let value: unknown;
  try {
    // The alias limit stops "billion laughs" documents from expanding.
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw invalid(`not valid YAML: ${(err as Error).message}`);
  }
  // An empty file adds no rules.
  const parsed = RepoPolicy.safeParse(value ?? {});
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({ path: i.path.map(String).join('.') || '(root)', message: i.message }));
    throw invalid(issues.map((i) => `${i.path}: ${i.message}`).join('; '), [issues]);
  }
  return parsed.data;
}

/**
 * Task ids and the `Idempotency-Key` rule: the same requester and key always name the
 * same task, and the hash of the parsed spec tells a retry from a different request.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { TaskSpec } from '../domain/task';

/** A fresh task id for a request without an `Idempotency-Key`. */
export function newTaskId(): string {
  return `t-${randomUUID()}`;
}

/** The task id a requester's `Idempotency-Key` names; scoped per requester so two people cannot collide. */
export function idempotentTaskId(requester: string, key: string): string {
  return `t-${sha256(`${requester}\n${key}`).slice(0, 32)}`;
}

/**
 * The task id a forge's webhook delivery names: a redelivery (same delivery id) names the same task. Hashed in a
 * domain of its own, so no requester's `Idempotency-Key` can name it first (a key holds no newline).
 */
export function deliveryTaskId(forge: string, deliveryId: string): string {
  return `t-${sha256(`delivery\n${forge}\n${deliveryId}`).slice(0, 32)}`;
}

/** The task of a labelled issue whose signed delivery body has SHA-256 `bodySha256` (hex). */
export function labelledIssueTaskId(bodySha256: string): string {
  return deliveryTaskId('github', `labeled-${bodySha256}`);
}

/** Hash of the parsed spec (defaults filled, keys sorted), so a retry that spells the same task differently still matches. */
export function requestHash(spec: TaskSpec): string {
  return sha256(canonicalJson(spec));
}

/** JSON with object keys sorted at every level and `undefined` members dropped, as `JSON.stringify` would. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k];
    return sorted;
  });
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

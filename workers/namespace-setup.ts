/**
 * Setting up a Temporal namespace for the backend: the custom search attributes the inbox reads, and
 * the retention that decides how long ended tasks stay readable there. Works on any server, embedded or not.
 */
import { Connection } from '@temporalio/client';
import { SearchAttributeType, type defineSearchAttributeKey } from '@temporalio/common';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import type { Logger } from './log';

/** A typed search attribute key as returned by `defineSearchAttributeKey`. */
export type SearchAttributeKey = ReturnType<typeof defineSearchAttributeKey>;

const NOOP_LOG: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const SEARCH_ATTRIBUTES_VISIBLE_TIMEOUT_MS = 10_000;
/** How often registration polls the server until the attributes are listed, and then usable. */
const SEARCH_ATTRIBUTES_POLL_MS = 200;
/** A workflow id no task has: the usability probe must name one, to stay an index lookup. */
const USABLE_PROBE_WORKFLOW_ID = 'agent-inbox-search-attribute-probe';

/** Thrown when a search attribute is already registered with another type, which the server cannot change in place. */
export class SearchAttributeConflictError extends Error {
  override readonly name = 'SearchAttributeConflictError';
  constructor(
    readonly attribute: string,
    readonly expected: SearchAttributeType,
    readonly actual: string,
  ) {
    super(`search attribute ${attribute} is registered as ${actual} but ${expected} is required; remove it or use a fresh data directory`);
  }
}

/** Thrown when adding search attributes fails or they do not become visible in time. */
export class SearchAttributeRegistrationError extends Error {
  override readonly name = 'SearchAttributeRegistrationError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

const INDEXED_VALUE_TYPES: Record<SearchAttributeType, temporal.api.enums.v1.IndexedValueType> = {
  [SearchAttributeType.TEXT]: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
  [SearchAttributeType.KEYWORD]: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  [SearchAttributeType.INT]: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT,
  [SearchAttributeType.DOUBLE]: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
  [SearchAttributeType.BOOL]: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
  [SearchAttributeType.DATETIME]: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
  [SearchAttributeType.KEYWORD_LIST]: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
};

/**
 * Registers whichever of `keys` are missing in `namespace` and waits until they are
 * visible and usable; needed because `start-dev --search-attribute` is not applied to an existing DB.
 */
export async function ensureSearchAttributes(connection: Connection, namespace: string, keys: readonly SearchAttributeKey[]): Promise<void> {
  await addMissingSearchAttributes(connection, namespace, keys);
  await untilSearchAttributesUsable(connection, namespace, keys);
}

async function addMissingSearchAttributes(connection: Connection, namespace: string, keys: readonly SearchAttributeKey[]): Promise<void> {
  const current = await listCustomSearchAttributes(connection, namespace);
  const missing: Record<string, temporal.api.enums.v1.IndexedValueType> = {};
  for (const key of keys) {
    const want = INDEXED_VALUE_TYPES[key.type];
    const have = current[key.name];
    if (have === undefined) missing[key.name] = want;
    else if (have !== want) throw new SearchAttributeConflictError(key.name, key.type, indexedTypeName(have));
  }
  const names = Object.keys(missing);
  if (names.length === 0) return;

  try {
    await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: missing });
  } catch (err) {
    // Another process may have added the same attributes concurrently; the check below decides.
    if (!isAlreadyExists(err)) {
      throw new SearchAttributeRegistrationError(`adding search attributes ${names.join(', ')} to ${namespace} failed: ${errorText(err)}`, { cause: err });
    }
  }

  const deadline = Date.now() + SEARCH_ATTRIBUTES_VISIBLE_TIMEOUT_MS;
  for (;;) {
    const now = await listCustomSearchAttributes(connection, namespace);
    const absent = names.filter((n) => now[n] === undefined);
    for (const n of names) {
      if (now[n] !== undefined && now[n] !== missing[n]) {
        const key = keys.find((k) => k.name === n)!;
        throw new SearchAttributeConflictError(n, key.type, indexedTypeName(now[n]!));
      }
    }
    if (absent.length === 0) return;
    if (Date.now() > deadline) {
      throw new SearchAttributeRegistrationError(`search attributes ${absent.join(', ')} not visible in ${namespace} after ${SEARCH_ATTRIBUTES_VISIBLE_TIMEOUT_MS} ms`);
    }
    await sleep(SEARCH_ATTRIBUTES_POLL_MS);
  }
}

/**
 * Listed is not yet usable: with SQL visibility (a server on PostgreSQL, MySQL or SQLite) a namespace's attributes
 * are a mapping in its namespace record, and the frontend reads that from its namespace cache, refreshed every
 * couple of seconds (`system.namespaceCacheRefreshInterval`). Until then a workflow start naming them fails with
 * INVALID_ARGUMENT "has no mapping defined for search attribute" (a burst of task starts right after a start of the
 * backend did). A visibility query naming every key goes through the same mapping, so it succeeds only once they
 * can be used; the WorkflowId condition keeps it to an index lookup on a namespace of any size.
 */
async function untilSearchAttributesUsable(connection: Connection, namespace: string, keys: readonly SearchAttributeKey[]): Promise<void> {
  if (keys.length === 0) return;
  const query = [`WorkflowId = '${USABLE_PROBE_WORKFLOW_ID}'`, ...keys.map((k) => `${k.name} IS NOT NULL`)].join(' AND ');
  const deadline = Date.now() + SEARCH_ATTRIBUTES_VISIBLE_TIMEOUT_MS;
  for (;;) {
    try {
      await connection.workflowService.countWorkflowExecutions({ namespace, query });
      return;
    } catch (err) {
      // gRPC status 3 is INVALID_ARGUMENT: the frontend does not map the names yet. Anything else is a real fault.
      if ((err as { code?: unknown }).code !== 3) {
        throw new SearchAttributeRegistrationError(`checking search attributes of ${namespace} failed: ${errorText(err)}`, { cause: err });
      }
      if (Date.now() > deadline) {
        throw new SearchAttributeRegistrationError(`search attributes of ${namespace} not usable after ${SEARCH_ATTRIBUTES_VISIBLE_TIMEOUT_MS} ms: ${errorText(err)}`, { cause: err });
      }
    }
    await sleep(SEARCH_ATTRIBUTES_POLL_MS);
  }
}

async function listCustomSearchAttributes(connection: Connection, namespace: string): Promise<Record<string, temporal.api.enums.v1.IndexedValueType>> {
  try {
    const res = await connection.operatorService.listSearchAttributes({ namespace });
    return res.customAttributes ?? {};
  } catch (err) {
    throw new SearchAttributeRegistrationError(`listing search attributes of ${namespace} failed: ${errorText(err)}`, { cause: err });
  }
}

function indexedTypeName(t: temporal.api.enums.v1.IndexedValueType): string {
  const name = temporal.api.enums.v1.IndexedValueType[t];
  return typeof name === 'string' ? name.replace('INDEXED_VALUE_TYPE_', '') : `type ${t}`;
}

function isAlreadyExists(err: unknown): boolean {
  // gRPC status 6 is ALREADY_EXISTS.
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 6;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Seconds in a day, for retention periods given in days. */
const DAY_SECONDS = 24 * 60 * 60;

/** What {@link ensureNamespaceRetention} found and did. */
export interface RetentionStatus {
  /** The namespace's workflow execution retention after the call, in days (fractional when not whole days). */
  namespace_days: number;
  /** `TASK_RETENTION_DAYS`: how long finished tasks should stay readable. */
  wanted_days: number;
  /** True when this call changed the namespace's retention. */
  updated: boolean;
  /** Set when Temporal keeps ended workflows for less time than wanted and nothing was changed. */
  warning?: string;
}

/**
 * How the backend treats a namespace's retention: `exact` sets it to the wanted days (the embedded server is ours),
 * `at-least` raises a shorter one and leaves a longer one alone (an opted-in external cluster), `check` changes nothing.
 */
export type RetentionMode = 'exact' | 'at-least' | 'check';

/**
 * Reads `namespace`'s retention of closed workflows and, as `mode` allows, updates it to `days`; a no-op when it
 * already fits, so it is safe at every start. A retention shorter than `days` that stays returns (and logs) a warning.
 * Updates go through the workflow service, which is where namespace configuration changes.
 */
export async function ensureNamespaceRetention(
  connection: Connection,
  namespace: string,
  days: number,
  opts: { mode: RetentionMode; log?: Logger },
): Promise<RetentionStatus> {
  const log = opts.log ?? NOOP_LOG;
  const current = await namespaceRetentionSeconds(connection, namespace);
  const wanted = days * DAY_SECONDS;
  const update = opts.mode === 'exact' ? current !== wanted : opts.mode === 'at-least' && current < wanted;
  if (!update) {
    if (current >= wanted) return { namespace_days: current / DAY_SECONDS, wanted_days: days, updated: false };
    const warning = `namespace ${namespace} keeps ended workflows ${formatDays(current)}, less than TASK_RETENTION_DAYS=${days}; older ended tasks are read from their final records`;
    log.warn('temporal retention shorter than TASK_RETENTION_DAYS', { namespace, namespace_days: current / DAY_SECONDS, wanted_days: days });
    return { namespace_days: current / DAY_SECONDS, wanted_days: days, updated: false, warning };
  }
  await connection.workflowService.updateNamespace({ namespace, config: { workflowExecutionRetentionTtl: msToTs(wanted * 1000) } });
  log.info('temporal namespace retention set', { namespace, from_days: current / DAY_SECONDS, to_days: days });
  return { namespace_days: (await namespaceRetentionSeconds(connection, namespace)) / DAY_SECONDS, wanted_days: days, updated: true };
}

/** The namespace's workflow execution retention in seconds, as the frontend describes it. */
export async function namespaceRetentionSeconds(connection: Connection, namespace: string): Promise<number> {
  const described = await connection.workflowService.describeNamespace({ namespace });
  return Number(described.config?.workflowExecutionRetentionTtl?.seconds ?? 0);
}

function formatDays(seconds: number): string {
  const d = seconds / DAY_SECONDS;
  return d >= 1 ? `${Number(d.toFixed(2))} day(s)` : `${Number((seconds / 3600).toFixed(2))} hour(s)`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

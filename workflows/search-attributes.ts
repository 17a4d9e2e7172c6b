/**
 * Search attributes that make open task workflows queryable as the Agent Inbox.
 *
 * Registered at startup through the operator service; kept within the SQLite
 * visibility store's limits (few Int/Datetime/KeywordList attributes).
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Current task state. */
export const SA_STATE = defineSearchAttributeKey('AgentState', SearchAttributeType.KEYWORD);
/** Repository the task works on. */
export const SA_REPO = defineSearchAttributeKey('AgentRepo', SearchAttributeType.KEYWORD);
/** Who asked for the task. */
export const SA_REQUESTER = defineSearchAttributeKey('AgentRequester', SearchAttributeType.KEYWORD);
/** Kinds of the task's pending inbox items. */
export const SA_ITEM_KINDS = defineSearchAttributeKey('AgentItemKinds', SearchAttributeType.KEYWORD_LIST);
/** The task's labels. */
export const SA_LABELS = defineSearchAttributeKey('AgentLabels', SearchAttributeType.KEYWORD_LIST);
/** Priority, 1 highest … 5. */
export const SA_PRIORITY = defineSearchAttributeKey('AgentPriority', SearchAttributeType.INT);
/** Number of pending inbox items (0 when the task needs nobody). */
export const SA_PENDING = defineSearchAttributeKey('AgentPendingItems', SearchAttributeType.INT);
/**
 * When the oldest pending item was raised; set exactly when `AgentPendingItems` is above 0 (one upsert
 * writes both). The inbox relies on that: a bound on this attribute selects pending tasks through its
 * index, where SQLite's planner would otherwise scan every pending task for `AgentPendingItems > 0`.
 */
export const SA_WAITING_SINCE = defineSearchAttributeKey('AgentWaitingSince', SearchAttributeType.DATETIME);

/** The team the task belongs to (set at start; absent on tasks from before teams). */
export const SA_TEAM = defineSearchAttributeKey('AgentTeam', SearchAttributeType.KEYWORD);
/** When the workflow last published what the outside sees; `GET /v1/events` follows it. */
export const SA_UPDATED_AT = defineSearchAttributeKey('AgentUpdatedAt', SearchAttributeType.DATETIME);

/** Every key the worker registers at startup. */
export const ALL_SEARCH_ATTRIBUTES = [
  SA_STATE,
  SA_REPO,
  SA_REQUESTER,
  SA_ITEM_KINDS,
  SA_LABELS,
  SA_PRIORITY,
  SA_PENDING,
  SA_WAITING_SINCE,
  SA_TEAM,
  SA_UPDATED_AT,
] as const;

/** Memo field holding the pending items' summaries, read by the inbox listing. */
export const MEMO_INBOX = 'inbox';
/** Memo field holding a short task summary (goal preview, state), read by task listings. */
export const MEMO_SUMMARY = 'summary';
/** Memo field holding the hash of the start request, for Idempotency-Key checks. */
export const MEMO_REQUEST_HASH = 'request_hash';

/** Shape of the `inbox` memo field. */
export interface InboxMemo {
  items: import('../domain/task').InboxItemSummary[];
}

/** Shape of the `summary` memo field. */
export interface SummaryMemo {
  goal: string;
  state: import('../domain/task').TaskState;
  created_at: string;
  updated_at: string;
}

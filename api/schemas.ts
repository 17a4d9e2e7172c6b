/**
 * Shapes only the HTTP edge has: path parameter formats, query strings and headers.
 * Task, decision and message bodies come from the domain module.
 */
import { z } from 'zod';
import { HIGHEST_PRIORITY, ItemKind, LOWEST_PRIORITY, TaskState, TeamName } from '../domain/task';
import { SAFE_FILTER_VALUE } from './visibility';

/** Task ids as `POST /v1/tasks` makes them (`t-` + UUID or 32 hex). */
export const TASK_ID = /^t-[A-Za-z0-9-]{1,64}$/;
/** Inbox item ids as the workflow makes them (`<kind>-<n>`). */
export const ITEM_ID = /^[a-z_]{1,40}-\d{1,9}$/;
/** Artifact names the store accepts: one path segment, no leading dot. */
export const ARTIFACT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

/** A string filter that is safe to put in a visibility query. */
const filterValue = (max: number) =>
  z.string().min(1).max(max).regex(SAFE_FILTER_VALUE, 'must not contain quotes, backslashes or control characters');

/** A priority given in a query string. */
const priority = z.coerce.number().int().min(HIGHEST_PRIORITY).max(LOWEST_PRIORITY);

/** Headers of `POST /v1/tasks`; other headers pass through unchecked. */
export const CreateTaskHeaders = z.object({
  'idempotency-key': z
    .string()
    .regex(/^[A-Za-z0-9._:-]{1,200}$/, 'must be 1-200 characters of A-Z a-z 0-9 . _ : -')
    .optional(),
});
export type CreateTaskHeaders = z.infer<typeof CreateTaskHeaders>;

/** Query string of `GET /v1/tasks`. */
export const TaskListQuery = z.strictObject({
  state: TaskState.optional(),
  repo: filterValue(2_000).optional(),
  requester: filterValue(200).optional(),
  label: filterValue(100).optional(),
  team: TeamName.optional(),
  priority: priority.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  /** Also list ended tasks from their final records, which outlive Temporal's retention; paged with `page_token`. */
  include_ended: z.enum(['true', 'false']).default('false').transform((v) => v === 'true'),
  /** The `next_page_token` of the previous page of an `include_ended` listing. */
  page_token: z.string().regex(/^[A-Za-z0-9_-]{1,400}$/, 'must be a next_page_token from an earlier page').optional(),
});
export type TaskListQuery = z.infer<typeof TaskListQuery>;

/** Query string of `GET /v1/inbox`. */
export const InboxQuery = z.strictObject({
  kind: ItemKind.optional(),
  repo: filterValue(2_000).optional(),
  requester: filterValue(200).optional(),
  team: TeamName.optional(),
  label: filterValue(100).optional(),
  /** Only items that have waited at least this many minutes. */
  older_than_minutes: z.coerce.number().min(0).max(60 * 24 * 365).optional(),
  priority: priority.optional(),
  limit: z.coerce.number().int().min(1).max(1_000).default(100),
});
export type InboxQuery = z.infer<typeof InboxQuery>;

/**
 * Wire shapes the front end reads, from the backend's own types where they exist; fields other parts of
 * the backend add later are optional here, so their absence never breaks a card.
 */
import type { Action, InboxItem, ItemKind, TaskView, TraceEntry } from '../domain/task';
import type { AnnotatedDiff, DiffFile, DiffLine } from '../domain/diff-risk';
import type { TaskEvent } from '../domain/events';

export type { Action, DiffFile, DiffLine, InboxItem, ItemKind, TaskEvent, TaskView, TraceEntry };

/** One row of `GET /v1/inbox`. */
export type { InboxEntry } from '../api/inbox';

/** `GET /v1/me`. */
export interface Me {
  subject: string;
  name?: string;
  role?: string;
  teams?: string[];
  via?: { kind: string; id: string };
  csrf_token?: string | null;
  /** Whether people sign in at an identity provider. */
  idp?: boolean;
}

/** `GET /login/options`, read before anyone is signed in. */
export type { SignInOptions } from '../api/routes/login';

/** `GET /v1/tasks/:id/inbox/:item_id/diff`. */
export interface ItemDiff extends AnnotatedDiff {
  source: string;
}

/** What a decision answers. */
export interface DecisionAck {
  [key: string]: unknown;
}

/**
 * What each kind of item is called and which buttons it has: the backend's table (`ACTIONS_BY_KIND`), checked
 * against it by type, so the front end never offers an action the workflow would refuse.
 */
import type { ACTIONS_BY_KIND } from '../domain/rules';
import type { Action, ItemKind } from './types';

/** The actions each kind accepts, in button order; typed as the backend's table. */
export const ACTIONS: typeof ACTIONS_BY_KIND = {
  pr_review: ['approve', 'request_changes', 'reject'],
  clarification: ['answer', 'cancel'],
  risky_action: ['approve', 'reject'],
  plan_approval: ['approve', 'request_changes', 'reject'],
  budget_request: ['grant_budget', 'cancel'],
  health_alert: ['message', 'cancel'],
};

/** Group order and headings of the inbox. */
export const KINDS: readonly { kind: ItemKind; label: string }[] = [
  { kind: 'pr_review', label: 'PR review' },
  { kind: 'clarification', label: 'Question' },
  { kind: 'risky_action', label: 'Risky action' },
  { kind: 'budget_request', label: 'Budget' },
  { kind: 'health_alert', label: 'Health' },
  { kind: 'plan_approval', label: 'Plan' },
];

/** Button labels. */
export const ACTION_LABEL: Readonly<Record<Action, string>> = {
  approve: 'Approve',
  reject: 'Reject',
  answer: 'Answer',
  request_changes: 'Request changes',
  grant_budget: 'Grant budget',
  message: 'Retry with message',
  cancel: 'Cancel task',
};

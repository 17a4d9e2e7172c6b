/**
 * What each kind of item is called and which buttons it has: the buttons are the backend's own table
 * (`ACTIONS_BY_KIND`, bundled from domain/), so the front end never offers an action the workflow would refuse.
 */
import { ACTIONS_BY_KIND } from '../domain/item-actions';
import type { Action, ItemKind } from './types';

/** The actions each kind accepts, in button order. */
export const ACTIONS = ACTIONS_BY_KIND;

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

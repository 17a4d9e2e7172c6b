/**
 * Which actions each inbox item kind accepts (the design's table). A module of its own, importing types
 * only, so the web inbox bundles the same table the workflow's validators use.
 */
import type { Action, ItemKind } from './task';

/** The actions each kind accepts, in the order the web inbox shows their buttons. */
export const ACTIONS_BY_KIND: Readonly<Record<ItemKind, readonly Action[]>> = {
  pr_review: ['approve', 'request_changes', 'reject'],
  clarification: ['answer', 'cancel'],
  risky_action: ['approve', 'reject'],
  plan_approval: ['approve', 'request_changes', 'reject'],
  budget_request: ['grant_budget', 'cancel'],
  health_alert: ['message', 'cancel'],
};

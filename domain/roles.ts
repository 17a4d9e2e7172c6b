/**
 * The roles and the least role each kind of request needs, and the default team: a pure module without
 * dependencies, so the API's guards, the web app and the workflow (which bundle it) apply the same table.
 */
import type { Action } from './task';

/** Roles in increasing power: each includes what the ones before it may do. */
export const ROLES = ['viewer', 'submitter', 'approver', 'admin'] as const;
export type RoleName = (typeof ROLES)[number];

/** Whether `have` includes what `need` may do. */
export function roleAtLeast(have: RoleName, need: RoleName): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

/** The team of tasks whose submitter belongs to no team (the local admin, a token without one). */
export const DEFAULT_TEAM = 'default';

/** The role that may submit a task. */
export const SUBMIT_ROLE: RoleName = 'submitter';

/** The role that may decide an inbox item (and settle a health alert with a message). */
export const DECIDE_ROLE: RoleName = 'approver';

/** The role that may send a task a message (one that settles nothing unless the sender may decide). */
export const MESSAGE_ROLE: RoleName = 'submitter';

/** The role that may cancel any task it sees; a task's requester may always cancel their own. */
export const CANCEL_ANY_ROLE: RoleName = 'approver';

/**
 * Why a caller of `role` may not take `action` (on a task they did or did not request), or null when they may.
 * A message on an inbox item (`onItem`: a health alert's retry) decides it, and needs what deciding needs.
 */
export function actionRefusal(role: RoleName, action: Action, isRequester: boolean, onItem = false): string | null {
  if (action === 'cancel') return isRequester || roleAtLeast(role, CANCEL_ANY_ROLE) ? null : `cancelling needs the ${CANCEL_ANY_ROLE} role or being the task's requester (you are ${role})`;
  if (action === 'message' && !onItem) return roleAtLeast(role, MESSAGE_ROLE) ? null : `messaging a task needs the ${MESSAGE_ROLE} role (you are ${role})`;
  return roleAtLeast(role, DECIDE_ROLE) ? null : `deciding an item needs the ${DECIDE_ROLE} role (you are ${role})`;
}

/**
 * Who is signed in, for the components that offer actions: the app provides `/v1/me` once, and a control the
 * caller's role may not use is disabled with the reason as its title, instead of being refused with a 403.
 */
import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import { actionRefusal, ROLES, roleAtLeast, SUBMIT_ROLE, type RoleName } from '../domain/roles';
import type { Action, Me } from './types';

/** The signed-in caller, or null on a backend without `/v1/me` (an open API: every control is offered). */
export const MeContext = createContext<Me | null>(null);

/** The caller's role, or null when the backend does not say (an unknown one counts as the least). */
function roleOf(me: Me | null): RoleName | null {
  if (me === null || me.role === undefined) return null;
  return (ROLES as readonly string[]).includes(me.role) ? (me.role as RoleName) : 'viewer';
}

/** Why the caller may not take `action` on a task requested by `requester` (on one of its items: `onItem`), or null when they may. */
export function useActionRefusal(): (action: Action, requester: string | null | undefined, onItem?: boolean) => string | null {
  const me = useContext(MeContext);
  const role = roleOf(me);
  return (action, requester, onItem) => (role === null ? null : actionRefusal(role, action, requester != null && requester === me!.subject, onItem));
}

/** Why the caller may not submit a task, or null when they may. */
export function useSubmitRefusal(): string | null {
  const role = roleOf(useContext(MeContext));
  return role === null || roleAtLeast(role, SUBMIT_ROLE) ? null : `submitting a task needs the ${SUBMIT_ROLE} role (you are ${role})`;
}

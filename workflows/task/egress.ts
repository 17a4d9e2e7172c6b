/**
 * The task's network in the workflow: which hosts each phase may reach (the operator's ceiling,
 * narrowed by the task and the repository, widened only by a human's grant for this task), what the
 * proxy refused, and the inbox item that asks a human to allow a host.
 */
import type { EgressGrant, EgressReport } from '../../activities/egress/types';
import { egressEntryError, expandEgress, grantableHosts, hostAllowed, intersectEgress, normalizeHost, type BlockedRequest, type EgressView } from '../../domain/egress';
import { preview } from '../../domain/rules';
import type { Resolution } from '../../domain/task';
import { raise, waitFor } from './inbox';
import type { TaskRun } from './state';
import { trace } from './visibility';

/** Which allowlist applies: the setup phase's, or the planner's (recipe steps, tool calls, checks). */
export type EgressPhase = 'setup' | 'planner';

/** Refusals kept in state for the review item and the summary (the count goes on). */
const BLOCKED_KEEP = 50;
/** Refusals shown in one trace entry or one inbox item. */
const BLOCKED_SHOWN = 10;

/** The network part of a task's state. Plain JSON. */
export interface EgressState {
  ceiling: string[];
  setup_allow: string[];
  granted: { domain: string; phase: EgressPhase; actor: string }[];
  /** Domains a human refused the agent for this task: asking again is answered from here, not from the inbox. Absent in older histories. */
  refused?: { domain: string; phase: EgressPhase; actor: string }[];
  blocked: BlockedRequest[];
  blocked_count: number;
  allowed_count: number;
}

/** The task's network state for changing it, made from what provisioning reported on first use. */
export function egressOf(t: TaskRun): EgressState {
  t.s.egress ??= readEgress(t);
  return t.s.egress;
}

/** The task's network state to read (queries must not change state): the stored one, or the one provisioning implies. */
function readEgress(t: TaskRun): EgressState {
  const s = t.s;
  return (
    s.egress ?? {
      // Absent from workers before egress existed: nothing is allowed then.
      ceiling: s.provision?.egress_ceiling ?? [],
      setup_allow: s.provision?.setup?.allow ?? [],
      granted: [],
      blocked: [],
      blocked_count: 0,
      allowed_count: 0,
    }
  );
}

/** The host patterns a phase may reach now: its allowlist within the ceiling, plus what a human granted for it. */
export function allowFor(t: TaskRun, phase: EgressPhase): string[] {
  const e = readEgress(t);
  const base = phase === 'setup' ? e.setup_allow : intersectEgress(e.ceiling, t.s.policy.egress_allowlist);
  const granted = e.granted.filter((g) => g.phase === phase).map((g) => g.domain);
  return [...new Set([...base, ...intersectEgress(e.ceiling, granted)])];
}

/** The grant one command runs with, attributed to `step`. */
export function grantFor(t: TaskRun, phase: EgressPhase, step: string): EgressGrant {
  return { allow: allowFor(t, phase), step };
}

/** Folds what the proxy saw of one command into the task: bytes into usage, refusals into state and the trace. */
export function noteEgress(t: TaskRun, report: EgressReport | undefined, step: string): void {
  if (!report) return;
  const s = t.s;
  const e = egressOf(t);
  s.usage.net_bytes_sent = (s.usage.net_bytes_sent ?? 0) + report.bytes_sent;
  s.usage.net_bytes_received = (s.usage.net_bytes_received ?? 0) + report.bytes_received;
  e.allowed_count += report.allowed;
  e.blocked_count += report.blocked_count;
  for (const b of report.blocked) {
    const same = e.blocked.find((x) => x.host === b.host && x.port === b.port && x.step === b.step && x.reason === b.reason);
    if (same) same.count += b.count;
    else e.blocked.push({ ...b });
  }
  if (e.blocked.length > BLOCKED_KEEP) e.blocked = e.blocked.slice(-BLOCKED_KEEP);
  if (report.blocked_count > 0 || report.allowed > 0) {
    trace(t, 'egress', report.blocked_count > 0 ? `${step}: ${report.blocked_count} request(s) refused: ${describeBlocked(report.blocked)}` : `${step}: ${report.allowed} request(s) through the proxy`, {
      step,
      allowed: report.allowed,
      blocked_count: report.blocked_count,
      blocked: report.blocked.slice(0, BLOCKED_SHOWN),
      bytes_sent: report.bytes_sent,
      bytes_received: report.bytes_received,
    });
  }
}

/** `host:port (reason)` of the first few refusals, for one line of text. */
export function describeBlocked(blocked: readonly BlockedRequest[]): string {
  const shown = blocked.slice(0, BLOCKED_SHOWN).map((b) => `${b.host}:${b.port} (${b.reason}${b.count > 1 ? `, ${b.count}×` : ''})`);
  return `${shown.join(', ')}${blocked.length > BLOCKED_SHOWN ? `, and ${blocked.length - BLOCKED_SHOWN} more` : ''}`;
}

/** What the model is told after a command some of whose requests were refused. */
export function blockedNote(t: TaskRun, report: EgressReport | undefined): string {
  if (!report || report.blocked_count === 0) return '';
  const hosts = grantableHosts(readEgress(t).ceiling, allowFor(t, 'planner'), report.blocked.map((b) => b.host));
  const ask = hosts.length > 0 ? ` To reach ${hosts.join(', ')}, call request_network with the domain and why you need it; a human decides.` : ' None of these can be allowed for this task.';
  return `\n[network: ${report.blocked_count} request(s) refused by the egress proxy: ${describeBlocked(report.blocked)}.${ask}]`;
}

/**
 * Asks a human to allow `hosts` (each inside the ceiling) for this task's `phase`, showing `why` and the
 * refused requests for them. Approve adds them to the task's grants (in state, so it survives restarts);
 * the decision is returned either way.
 */
export async function askToAllow(
  t: TaskRun,
  phase: EgressPhase,
  hosts: string[],
  why: string,
  detail: Record<string, unknown>,
): Promise<Resolution> {
  const e = egressOf(t);
  const seen = e.blocked.filter((b) => hosts.includes(b.host)).slice(-BLOCKED_SHOWN);
  const item = raise(t, 'risky_action', `Allow egress to ${hosts.slice(0, 3).join(', ')}${hosts.length > 3 ? ` and ${hosts.length - 3} more` : ''} for this task?`, 'awaiting_approval', {
    reason: 'network access outside the task\'s allowlist',
    hosts,
    phase,
    why: preview(why, 2_000),
    requests_seen: seen,
    allowlist: allowFor(t, phase),
    ...detail,
  });
  const r = await waitFor(t, item);
  if (r.action === 'approve') {
    for (const h of hosts) if (!e.granted.some((g) => g.domain === h && g.phase === phase)) e.granted.push({ domain: h, phase, actor: r.actor });
    trace(t, 'egress_granted', `${r.actor} allowed ${hosts.join(', ')} for this task (${phase})`, { hosts, phase }, r.actor);
  } else {
    e.refused ??= [];
    for (const h of hosts) if (!e.refused.some((g) => g.domain === h && g.phase === phase)) e.refused.push({ domain: h, phase, actor: r.actor });
    trace(t, 'egress_refused', `${r.actor} refused ${hosts.join(', ')}${r.comment ? `: ${preview(r.comment, 200)}` : ''}`, { hosts, phase }, r.actor);
  }
  return r;
}

/** The hosts a failed command's refusals name that a human could allow for `phase`. */
export function grantableFrom(t: TaskRun, phase: EgressPhase, report: EgressReport | undefined): string[] {
  if (!report || report.blocked.length === 0) return [];
  return grantableHosts(readEgress(t).ceiling, allowFor(t, phase), report.blocked.map((b) => b.host));
}

/**
 * The agent's `request_network`: a domain inside the ceiling and not allowed yet goes to a human;
 * returns what the model is told.
 */
export async function requestNetwork(t: TaskRun, domain: string, why: string, turn: number): Promise<string> {
  const host = normalizeHost(domain);
  const invalid = egressEntryError(host);
  if (invalid !== null || host.startsWith('*.')) return `error: ${invalid ?? 'ask for one domain, not a wildcard'}`;
  const e = readEgress(t);
  if (hostAllowed(host, allowFor(t, 'planner'))) return `${host} is already allowed for this task; a refusal of it had another reason (see the refusal message)`;
  if (!hostAllowed(host, expandEgress(e.ceiling))) return `${host} is outside what the operator allows any task to reach (EGRESS_ALLOW); it cannot be granted here. Work without it, or ask_human.`;
  // One ask per domain: a model that asks again (another reason, another spelling) must not fill the inbox.
  const refused = e.refused?.find((g) => g.domain === host && g.phase === 'planner');
  if (refused) return `${refused.actor} already refused ${host} for this task; do not try to reach it again`;
  const r = await askToAllow(t, 'planner', [host], why, { turn, asked_by: 'agent' });
  return r.action === 'approve'
    ? `approved by ${r.actor}: ${host} is allowed for this task from now on; run the command again`
    : `rejected by ${r.actor}${r.comment ? `: ${r.comment}` : ''}; do not try to reach ${host} again`;
}

/** The task view's network part; absent for a task that never had an allowlist, a grant or a refusal. */
export function egressView(t: TaskRun): EgressView | undefined {
  const allow = allowFor(t, 'planner');
  const setup = allowFor(t, 'setup');
  if (!t.s.egress && allow.length === 0 && setup.length === 0) return undefined;
  const st = readEgress(t);
  return {
    ceiling: st.ceiling,
    setup_allowlist: setup,
    allowlist: allow,
    granted: st.granted,
    blocked: st.blocked,
    blocked_count: st.blocked_count,
    allowed_count: st.allowed_count,
  };
}

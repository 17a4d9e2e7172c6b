/**
 * The setup phase: the task's setup commands (or the repository's `.agent/setup.sh`) run first, in
 * the same sandbox, with the setup allowlist. What they leave in ignored paths stays for the planner
 * and goes to the setup cache; their changes to tracked files are undone (the next command starts from
 * the base checkpoint), so a cache hit and a fresh setup leave the same working copy.
 */
import { preview } from '../../domain/rules';
import { runUntilSuccess } from './command';
import { gateCommand } from './gates';
import { onSandbox } from './sandbox';
import type { End, TaskRun } from './state';
import { trace } from './visibility';

/** Timeout of one setup command when the task names none (a repository's script). */
const SETUP_TIMEOUT_SECONDS = 1_800;

/** Whether the task has a setup phase still to run. */
export function setupPending(t: TaskRun): boolean {
  const setup = t.s.provision?.setup;
  return setup !== undefined && setup !== null && !t.s.setup?.finished;
}

/** Runs the setup phase to its end (or restores it from the cache); an End when a human stops the task there. */
export async function runSetup(t: TaskRun): Promise<End | undefined> {
  const s = t.s;
  const setup = s.provision!.setup!;
  const st = (s.setup ??= { done: 0, finished: false, cache: setup.cache === null ? 'off' : 'not_saved' });
  if (setup.cache?.hit) {
    trace(t, 'setup', `setup cache hit: ${setup.cache.files} files restored, setup not run`, { cache_key: setup.cache.key, files: setup.cache.files, bytes: setup.cache.bytes, source: setup.source });
    st.cache = 'hit';
    st.finished = true;
    return undefined;
  }
  const timeout = t.input.spec.setup?.timeout_seconds ?? SETUP_TIMEOUT_SECONDS;
  if (st.done === 0 && setup.cache?.refused) {
    trace(t, 'health', `a cached setup for this repository was refused and removed (${preview(setup.cache.refused, 300)}); setup runs instead`, { cache_key: setup.cache.key });
  }
  if (st.done === 0) {
    trace(t, 'setup', `setup: ${setup.commands.length} command(s) from ${setup.source === 'task' ? 'the task' : 'the repository (.agent/setup.sh)'}${setup.cache ? ', cache miss' : ''}`, {
      source: setup.source,
      allowlist: setup.allow,
      cache_key: setup.cache?.key ?? null,
    });
  }
  while (st.done < setup.commands.length) {
    const index = st.done;
    const command = setup.commands[index]!;
    const label = `setup ${index + 1}`;
    const key = `setup:${index}`;
    if (!s.approved.includes(key)) {
      const r = await gateCommand(t, command, 'Run setup command', { setup: index, source: setup.source });
      if (r?.action === 'reject') return { state: 'rejected', result: `setup command ${index + 1} rejected by ${r.actor}` };
      if (r) s.approved.push(key);
    }
    const res = await runUntilSuccess(t, { index, round: 0, label, command, timeout_seconds: timeout, phase: 'setup' });
    if (res.changed_paths.length > 0) {
      trace(t, 'setup', `${label} changed tracked or unignored files; setup prepares the environment only, so they are undone`, { paths: res.changed_paths.slice(0, 50) });
    }
    st.done += 1;
  }
  // A human's grant is for this task only: what setup fetched with it must not reach the next task through the cache.
  const granted = (s.egress?.granted ?? []).filter((g) => g.phase === 'setup').map((g) => g.domain);
  if (setup.cache && granted.length > 0) {
    st.cache = 'not_saved';
    trace(t, 'setup', `setup not cached: it ran with hosts a human allowed for this task only (${granted.join(', ')})`, { cache_key: setup.cache.key, granted });
  } else if (setup.cache) {
    const key = setup.cache.key;
    const saved = await onSandbox(t, 'io', (acts, sandbox) => acts.saveSetupCache({ task_id: t.input.task_id, sandbox, key }));
    st.cache = saved.saved ? 'saved' : 'not_saved';
    trace(t, 'setup', saved.saved ? `setup cached: ${saved.files} files, ${saved.bytes} bytes` : `setup not cached: ${preview(saved.reason ?? 'unknown', 200)}`, {
      cache_key: setup.cache.key,
      ...saved,
    });
  }
  st.finished = true;
  return undefined;
}

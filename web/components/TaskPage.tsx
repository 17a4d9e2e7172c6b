/**
 * A task: its trace as a timeline (who, when, what), usage against budget, sandbox and isolation, branch,
 * its pull request and the wait for its merge, a link to its workflow in the Temporal UI, its open items and a
 * cancel button.
 */
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import { httpUrl, usd } from '../format';
import { navigate } from '../router';
import type { TaskView, TraceEntry } from '../types';
import { DecisionBar } from './DecisionBar';

/** The Temporal UI link the server put in the page (`<meta name="temporal-ui">`), or null. */
function temporalLink(taskId: string): string | null {
  const base = httpUrl(document.querySelector<HTMLMetaElement>('meta[name="temporal-ui"]')?.content);
  const ns = document.querySelector<HTMLMetaElement>('meta[name="temporal-namespace"]')?.content || 'default';
  if (base === null) return null;
  return `${base.replace(/\/+$/, '')}/namespaces/${encodeURIComponent(ns)}/workflows/${encodeURIComponent(taskId)}`;
}

/** The pull request's state in a few words: draft, merged, closed (by whom), or open. */
function pullRequestState(pr: NonNullable<TaskView['pull_request']>): string {
  if (pr.merged_at !== null) return 'merged';
  if (pr.closed) return pr.closed_by ? `closed by ${pr.closed_by}` : 'closed';
  return pr.draft ? 'draft' : 'open';
}

/** The task's pull request as a link (only to an http(s) address), with its state. */
function PullRequestFact(props: { pr: NonNullable<TaskView['pull_request']> }) {
  const url = httpUrl(props.pr.url);
  const label = `#${props.pr.number}`;
  return (
    <span>
      pull request{' '}
      {url ? (
        <a href={url} target="_blank" rel="noopener noreferrer" data-testid="pull-request">
          {label}
        </a>
      ) : (
        <span data-testid="pull-request">{label}</span>
      )}{' '}
      ({pullRequestState(props.pr)})
    </span>
  );
}

/** One usage bar. */
function Meter(props: { label: string; used: number; limit: number; fmt?: (n: number) => string }) {
  const pct = props.limit > 0 ? Math.min(100, (props.used / props.limit) * 100) : 0;
  const f = props.fmt ?? String;
  return (
    <div class="meter">
      <span>{props.label}</span>
      <progress max={100} value={pct} />
      <span>
        {f(props.used)} / {f(props.limit)}
      </span>
    </div>
  );
}

/** The task page for `taskId`. */
export function TaskPage(props: { taskId: string }) {
  const [view, setView] = useState<TaskView | null>(null);
  const [trace, setTrace] = useState<TraceEntry[]>([]);
  const [error, setError] = useState<string | null>(null);
  const load = (): void => {
    const id = encodeURIComponent(props.taskId);
    api<TaskView>('GET', `/v1/tasks/${id}`).then(setView, (e: Error) => setError(e.message));
    api<{ entries: TraceEntry[] }>('GET', `/v1/tasks/${id}/trace`).then((t) => setTrace(t.entries), () => undefined);
  };
  useEffect(load, [props.taskId]);
  if (error) return <main class="error">{error}</main>;
  if (!view) return <main class="muted">loading…</main>;
  const link = temporalLink(view.task_id);
  const pending = view.items.filter((i) => i.status === 'pending');
  const ended = ['done', 'rejected', 'failed', 'cancelled', 'timed_out'].includes(view.state);
  return (
    <main class="task" data-testid="task-page">
      <a
        href="/"
        class="link"
        onClick={(e) => {
          e.preventDefault();
          navigate('/');
        }}
      >
        ← inbox
      </a>
      <h1>{view.spec.goal.split('\n')[0]}</h1>
      <div class="facts">
        <span class={`state state-${view.state}`} data-testid="task-state">
          {view.state}
        </span>
        {view.state === 'queued' && view.queue_position !== undefined ? <span data-testid="queue-position">number {view.queue_position} in the queue</span> : null}
        <span>{view.spec.repo}</span>
        <span>requested by {view.spec.requester}</span>
        {view.spec.team ? <span>team {view.spec.team}</span> : null}
        <span>
          sandbox {view.sandbox_id ?? '—'} ({view.isolation}){view.sandbox === 'released' ? ', released while waiting' : ''}
        </span>
        {view.branch ? (
          <span>
            branch <code>{view.branch}</code>
            {view.commit ? <code> @ {view.commit.slice(0, 10)}</code> : null}
          </span>
        ) : null}
        {view.pull_request ? <PullRequestFact pr={view.pull_request} /> : null}
        {view.state === 'awaiting_merge' && view.merge ? (
          <span data-testid="awaiting-merge">
            approved by {view.merge.approved_by}; {view.merge.method ? `merging (${view.merge.method}) once GitHub allows it` : 'waiting for the merge on GitHub'}
            {view.merge.attempts > 0 ? ` (${view.merge.attempts} attempt${view.merge.attempts === 1 ? '' : 's'} so far)` : ''}
          </span>
        ) : null}
        {link ? (
          <a href={link} target="_blank" rel="noopener noreferrer" data-testid="temporal-link">
            workflow in Temporal
          </a>
        ) : null}
      </div>
      <section class="usage">
        <Meter label="steps" used={view.usage.steps} limit={view.budget.max_steps} />
        <Meter label="tokens" used={view.usage.tokens} limit={view.budget.max_tokens} />
        <Meter label="cost" used={view.usage.usd} limit={view.budget.max_usd} fmt={usd} />
      </section>
      {pending.map((i) => (
        <section class="card" key={i.item_id}>
          <strong>{i.title}</strong>
          <DecisionBar taskId={view.task_id} itemId={i.item_id} kind={i.kind} requester={view.spec.requester} detail={i.detail} onDone={load} />
        </section>
      ))}
      {!ended ? (
        <DecisionBar taskId={view.task_id} itemId="" kind="health_alert" requester={view.spec.requester} detail={{}} onDone={load} cancelOnly />
      ) : (
        <p class="result">{view.result}</p>
      )}
      <h2>Timeline</h2>
      <ol class="timeline" data-testid="timeline">
        {trace.map((t, i) => (
          <li key={i}>
            <time>{new Date(t.at).toLocaleString()}</time> <span class="type">{t.type}</span> {t.actor ? <span class="actor">{t.actor}</span> : null} {t.message}
          </li>
        ))}
      </ol>
    </main>
  );
}

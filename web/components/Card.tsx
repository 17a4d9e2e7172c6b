/**
 * One inbox item: what, why, risk, cost, wait and its buttons, from the listing at once and from the task's
 * view (fetched when the card comes on screen) for the detail.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { itemDiff, taskView } from '../detail-cache';
import { duration, str, usd } from '../format';
import { navigate } from '../router';
import type { InboxEntry, InboxItem } from '../types';
import { DecisionBar, type KeyCommand } from './DecisionBar';
import { DiffViewer } from './DiffViewer';
import { KeyDetail } from './KeyDetail';

/** How risky an item of this kind is to get wrong, and the reason when its detail names one. */
function riskOf(entry: InboxEntry, detail: Record<string, unknown> | undefined): { level: string; why: string | null } {
  const why = str(detail, 'reason') ?? null;
  const matched = str(detail, 'matched');
  const reason = why && matched ? `${why} (${matched})` : why ?? (matched ? `matches ${matched}` : str(detail, 'why'));
  const level = entry.kind === 'risky_action' ? 'high' : entry.kind === 'pr_review' || entry.kind === 'plan_approval' ? 'review' : entry.kind === 'budget_request' ? 'cost' : entry.kind === 'health_alert' ? 'stuck' : 'question';
  return { level, why: reason };
}

/** An inbox card; `selected` marks the keyboard cursor and `command` carries a/r/c to it. */
export function Card(props: { entry: InboxEntry; selected: boolean; command?: KeyCommand; onDecided: () => void; onDeciding?: () => void; onSelect: () => void }) {
  const e = props.entry;
  const ref = useRef<HTMLElement>(null);
  const [item, setItem] = useState<InboxItem | null>(null);
  const [showDiff, setShowDiff] = useState(false);
  const [diffRisk, setDiffRisk] = useState<string | null>(null);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const io = new IntersectionObserver((entries) => {
      if (!entries.some((x) => x.isIntersecting)) return;
      io.disconnect();
      taskView(e.task_id).then(
        (v) => setItem(v.items.find((i) => i.item_id === e.item_id) ?? null),
        () => undefined,
      );
    });
    io.observe(el);
    return () => io.disconnect();
  }, [e.task_id, e.item_id]);
  useEffect(() => {
    if (props.selected) ref.current?.scrollIntoView({ block: 'nearest' });
  }, [props.selected]);

  const detail = item?.detail;
  const risk = riskOf(e, detail);
  const usage = detail?.['usage'] as { steps?: number; tokens?: number; usd?: number } | undefined;
  const overdue = e.overdue ?? (e.due_at ? Date.parse(e.due_at) < Date.now() : false);
  const hasDiff = (e.kind === 'pr_review' || e.kind === 'risky_action') && (typeof detail?.['diff_ref'] === 'string' || typeof detail?.['diff_preview'] === 'string');
  // What the diff's rules flagged belongs on the card: a reviewer should not have to open the diff to learn it.
  useEffect(() => {
    if (!hasDiff) return;
    itemDiff(e.task_id, e.item_id).then(
      (d) => {
        const reasons = new Set<string>();
        for (const f of d.files) {
          for (const r of f.risks) reasons.add(r);
          for (const l of f.lines) for (const r of l.risks ?? []) reasons.add(r);
        }
        setDiffRisk(d.risky === 0 ? 'diff: nothing flagged' : `diff: ${d.risky} flagged (${[...reasons].join(', ')})`);
      },
      () => undefined,
    );
  }, [hasDiff, e.task_id, e.item_id]);
  return (
    <article
      ref={ref}
      class={`card kind-${e.kind}${props.selected ? ' selected' : ''}${overdue ? ' overdue' : ''}`}
      data-testid="card"
      data-kind={e.kind}
      data-task={e.task_id}
      data-item={e.item_id}
      data-ready={item ? 'true' : 'false'}
      tabIndex={-1}
      onClick={props.onSelect}
    >
      <header class="card-head">
        <a
          class="title"
          href={`/tasks/${encodeURIComponent(e.task_id)}`}
          data-testid="card-title"
          onClick={(ev) => {
            ev.preventDefault();
            navigate(`/tasks/${encodeURIComponent(e.task_id)}`);
          }}
        >
          {e.title}
        </a>
        <span class={`wait${overdue ? ' late' : ''}`} data-testid="card-wait" title={e.created_at}>
          {overdue ? 'OVERDUE · ' : ''}waiting {duration(e.waiting_seconds)}
        </span>
      </header>
      <div class="meta" data-testid="card-meta">
        <span class={`risk risk-${risk.level}`} data-testid="card-risk">
          {risk.level}
        </span>
        {e.priority !== null ? <span>P{e.priority}</span> : null}
        {e.repo ? <span class="repo">{e.repo.split('/').slice(-2).join('/')}</span> : null}
        {e.requester ? <span>by {e.requester}</span> : null}
        {e.team ? <span>team {e.team}</span> : null}
        {(e.labels ?? []).map((l) => (
          <span class="label" key={l}>
            {l}
          </span>
        ))}
        <span class="cost" data-testid="card-cost">
          {usage ? `${usage.steps ?? 0} steps · ${usage.tokens ?? 0} tok · ${usd(usage.usd ?? 0)}` : '…'}
        </span>
      </div>
      {risk.why || diffRisk ? (
        <div class="why" data-testid="card-why">
          {[risk.why, diffRisk].filter(Boolean).join(' · ')}
        </div>
      ) : null}
      {detail ? <KeyDetail taskId={e.task_id} kind={e.kind} detail={detail} /> : <div class="key muted">{e.goal ?? ''}</div>}
      <DecisionBar taskId={e.task_id} itemId={e.item_id} kind={e.kind} requester={e.requester} detail={detail} command={props.command} onDone={props.onDecided} {...(props.onDeciding ? { onStart: props.onDeciding } : {})} />
      {hasDiff ? (
        <button type="button" class="link" data-testid="show-diff" onClick={() => setShowDiff(!showDiff)}>
          {showDiff ? 'hide diff' : 'show diff'}
        </button>
      ) : null}
      {showDiff ? <DiffViewer taskId={e.task_id} itemId={e.item_id} /> : null}
    </article>
  );
}

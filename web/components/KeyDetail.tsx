/** The one thing a card must show for its kind: the command, the question, the diff stat, the budget, the failing output. */
import type { ItemKind } from '../types';
import { httpUrl, lastLines, str, usd } from '../format';
import { LogView } from './LogView';

type Detail = Record<string, unknown>;

/** The review's pull request, when it has one at an http(s) address (never a `javascript:` link). */
function pullRequestLink(d: Detail): { number: number; url: string; draft: boolean } | null {
  const pr = d['pull_request'] as { number?: unknown; url?: unknown; draft?: unknown } | undefined;
  const url = httpUrl(pr?.url);
  if (!pr || typeof pr.number !== 'number' || url === null) return null;
  return { number: pr.number, url, draft: pr.draft === true };
}

/** Kind-specific detail of an item, short enough for a card. */
export function KeyDetail(props: { taskId: string; kind: ItemKind; detail: Detail }) {
  const d = props.detail;
  switch (props.kind) {
    case 'risky_action': {
      const what = str(d, 'command') ?? str(d, 'action') ?? (Array.isArray(d['paths']) ? (d['paths'] as string[]).join(', ') : null) ?? (Array.isArray(d['hosts']) ? (d['hosts'] as string[]).join(', ') : null);
      return (
        <div class="key" data-testid="key-detail">
          {what ? <pre class="command">{what}</pre> : null}
          {str(d, 'diff_stat') ? <pre class="stat">{lastLines(str(d, 'diff_stat')!, 4)}</pre> : null}
        </div>
      );
    }
    case 'clarification':
      return (
        <div class="key question" data-testid="key-detail">
          {str(d, 'question') ?? '(no question text)'}
        </div>
      );
    case 'pr_review': {
      const pr = pullRequestLink(d);
      return (
        <div class="key" data-testid="key-detail">
          {pr ? (
            <a href={pr.url} target="_blank" rel="noopener noreferrer" data-testid="pull-request-link">
              pull request #{pr.number}
              {pr.draft ? ' (draft)' : ''}
            </a>
          ) : null}{' '}
          {str(d, 'branch') ? <code>{str(d, 'branch')}</code> : null} {d['files_changed'] !== undefined ? <span>{String(d['files_changed'])} file(s) changed</span> : null}
          {str(d, 'diff_stat') ? <pre class="stat">{lastLines(str(d, 'diff_stat')!, 4)}</pre> : null}
        </div>
      );
    }
    case 'plan_approval': {
      const steps = Array.isArray(d['steps']) ? (d['steps'] as { name?: string | null; run?: string }[]) : [];
      return (
        <div class="key" data-testid="key-detail">
          {steps.length ? (
            <ol class="steps">
              {steps.slice(0, 4).map((s, i) => (
                <li key={i}>
                  <code>{s.name ?? s.run ?? String(s)}</code>
                </li>
              ))}
              {steps.length > 4 ? <li class="muted">and {steps.length - 4} more</li> : null}
            </ol>
          ) : (
            <div>{str(d, 'plan') ?? str(d, 'goal') ?? ''}</div>
          )}
        </div>
      );
    }
    case 'budget_request': {
      const usage = (d['usage'] ?? {}) as Record<string, number>;
      const budget = (d['budget'] ?? {}) as Record<string, number>;
      const ex = str(d, 'exhausted') ?? 'max_steps';
      const used = ex === 'max_steps' ? usage['steps'] : ex === 'max_tokens' ? usage['tokens'] : usage['usd'];
      const limit = budget[ex];
      const fmt = (v: number | undefined): string => (v === undefined ? '?' : ex === 'max_usd' ? usd(v) : String(v));
      return (
        <div class="key" data-testid="key-detail">
          <span class="budget-used">
            {ex.replace('max_', '')}: {fmt(used)} used of {fmt(limit)}
          </span>
        </div>
      );
    }
    case 'health_alert':
      return (
        <div class="key" data-testid="key-detail">
          {str(d, 'command') ? <pre class="command">{str(d, 'command')}</pre> : null}
          {str(d, 'output_preview') !== null ? (
            <LogView taskId={props.taskId} label={str(d, 'step_name')} exitCode={d['exit_code']} output={str(d, 'output_preview')!} outputRef={d['output_ref']} />
          ) : null}
        </div>
      );
    default:
      return null;
  }
}

/**
 * The buttons of one item, exactly the actions its kind accepts: one-click approve, a comment for reject and
 * request changes, an answer box, a budget grant form; then the result (or who settled a stale item). A control
 * the caller's role may not use is disabled, its title saying why.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError } from '../api';
import { ACTION_LABEL, ACTIONS } from '../kinds';
import { useActionRefusal } from '../role';
import type { Action, ItemKind } from '../types';

/** A keyboard request for this card's bar (`seq` changes each time a key is pressed). */
export interface KeyCommand {
  action: 'approve' | 'reject' | 'request_changes';
  seq: number;
  /** The card the key was pressed on (`task_id/item_id`). */
  target: string;
}

type Outcome = { ok: true; text: string } | { ok: false; text: string };

const NEEDS_COMMENT: readonly Action[] = ['reject', 'request_changes', 'cancel'];

/** The decision controls of an item of a task `requester` asked for; `onDone` runs after a decision is accepted. */
export function DecisionBar(props: { taskId: string; itemId: string; kind: ItemKind; requester: string | null; detail?: Record<string, unknown>; command?: KeyCommand; onDone: () => void; onStart?: () => void; cancelOnly?: boolean }) {
  const actions: readonly Action[] = props.cancelOnly ? ['cancel'] : ACTIONS[props.kind];
  const refusalOf = useActionRefusal();
  // Every action here but a bare cancel acts on the item: a message retries a health alert, a decision.
  const refused = (a: Action): string | null => refusalOf(a, props.requester, !props.cancelOnly);
  const [open, setOpen] = useState<Action | null>(null);
  const [text, setText] = useState('');
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const exhausted = typeof props.detail?.['exhausted'] === 'string' ? (props.detail['exhausted'] as string) : 'max_steps';
  const [grantField, setGrantField] = useState(exhausted);
  const [grantValue, setGrantValue] = useState(exhausted === 'max_usd' ? '1' : exhausted === 'max_tokens' ? '100000' : '10');
  const commentRef = useRef<HTMLTextAreaElement>(null);

  const send = async (action: Action): Promise<void> => {
    setBusy(true);
    // From here the card stays put: a live event may report the decision before its response does.
    props.onStart?.();
    try {
      if (action === 'cancel') {
        await api('POST', `/v1/tasks/${encodeURIComponent(props.taskId)}/cancel`, text ? { reason: text } : {});
      } else if (action === 'message') {
        await api('POST', `/v1/tasks/${encodeURIComponent(props.taskId)}/messages`, { text });
      } else {
        const body: Record<string, unknown> = { action };
        if (action === 'answer') body['answer'] = text;
        if (action === 'reject' || action === 'request_changes') {
          if (text) body['comment'] = text;
        }
        if (action === 'grant_budget') body['budget'] = { [grantField]: Number(grantValue) };
        await api('POST', `/v1/tasks/${encodeURIComponent(props.taskId)}/inbox/${encodeURIComponent(props.itemId)}`, body);
      }
      setOutcome({ ok: true, text: `${ACTION_LABEL[action]}: done` });
      setOpen(null);
      setText('');
      props.onDone();
    } catch (err) {
      const e = err instanceof ApiError ? err : null;
      // A stale item's message names who settled it and when.
      setOutcome({ ok: false, text: e ? `${e.code === 'stale_decision' ? 'Already settled: ' : ''}${e.message}` : String(err) });
    } finally {
      setBusy(false);
    }
  };

  const press = (action: Action): void => {
    // A keyboard shortcut reaches here past a disabled button: say why instead of sending what would be refused.
    const refusal = refused(action);
    if (refusal !== null) setOutcome({ ok: false, text: refusal });
    else if (action === 'approve') void send('approve');
    else if (NEEDS_COMMENT.includes(action)) {
      setOpen(action);
      setTimeout(() => commentRef.current?.focus(), 0);
    }
  };

  useEffect(() => {
    if (props.command && actions.includes(props.command.action)) press(props.command.action);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [props.command?.seq]);

  if (outcome?.ok) {
    return (
      <div class="result ok" role="status" data-testid="result">
        {outcome.text}
      </div>
    );
  }
  const freeText = actions.includes('answer') ? 'answer' : actions.includes('message') ? 'message' : null;
  return (
    <div class="decide" data-testid="decide">
      {freeText ? (
        <form
          class="inline"
          onSubmit={(e) => {
            e.preventDefault();
            if (text.trim() && refused(freeText) === null) void send(freeText);
          }}
        >
          <textarea
            rows={1}
            data-testid={`${freeText}-box`}
            disabled={refused(freeText) !== null}
            placeholder={freeText === 'answer' ? 'Your answer' : 'Message for the retry'}
            value={text}
            onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
          />
          <button type="submit" disabled={busy || refused(freeText) !== null} title={refused(freeText) ?? undefined} data-action={freeText} class="primary">
            {ACTION_LABEL[freeText]}
          </button>
        </form>
      ) : null}
      {actions.includes('grant_budget') ? (
        <form
          class="inline"
          onSubmit={(e) => {
            e.preventDefault();
            if (refused('grant_budget') === null) void send('grant_budget');
          }}
        >
          <select value={grantField} onChange={(e) => setGrantField((e.target as HTMLSelectElement).value)} aria-label="budget field">
            <option value="max_steps">+ steps</option>
            <option value="max_tokens">+ tokens</option>
            <option value="max_usd">+ USD</option>
            <option value="max_wall_clock_minutes">+ minutes</option>
          </select>
          <input type="number" min="0" step="any" value={grantValue} onInput={(e) => setGrantValue((e.target as HTMLInputElement).value)} data-testid="grant-amount" aria-label="amount" />
          <button type="submit" disabled={busy || refused('grant_budget') !== null} title={refused('grant_budget') ?? undefined} data-action="grant_budget" class="primary">
            {ACTION_LABEL.grant_budget}
          </button>
        </form>
      ) : null}
      <div class="buttons">
        {actions
          .filter((a) => a !== freeText && a !== 'grant_budget')
          .map((a) => (
            <button type="button" key={a} disabled={busy || refused(a) !== null} title={refused(a) ?? undefined} data-action={a} class={a === 'approve' ? 'primary' : a === 'reject' || a === 'cancel' ? 'danger' : ''} onClick={() => press(a)}>
              {ACTION_LABEL[a]}
            </button>
          ))}
      </div>
      {open !== null ? (
        <form
          class="comment"
          onSubmit={(e) => {
            e.preventDefault();
            void send(open);
          }}
        >
          <textarea ref={commentRef} rows={2} placeholder={open === 'cancel' ? 'Reason (optional)' : 'Comment'} value={text} onInput={(e) => setText((e.target as HTMLTextAreaElement).value)} data-testid="comment-box" />
          <button type="submit" disabled={busy || (open === 'request_changes' && !text.trim())} data-action={`confirm-${open}`}>
            {ACTION_LABEL[open]}
          </button>
          <button type="button" class="link" onClick={() => setOpen(null)}>
            never mind
          </button>
        </form>
      ) : null}
      {outcome && !outcome.ok ? (
        <div class="result bad" role="alert" data-testid="result">
          {outcome.text}
        </div>
      ) : null}
    </div>
  );
}

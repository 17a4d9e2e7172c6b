/** An item's diff, annotated: risky lines highlighted with the reason, risky files named, big files collapsed. */
import { useEffect, useState } from 'preact/hooks';
import { itemDiff } from '../detail-cache';
import type { DiffFile, ItemDiff } from '../types';

/** Loads and shows `GET /v1/tasks/:id/inbox/:item_id/diff`. */
export function DiffViewer(props: { taskId: string; itemId: string }) {
  const [diff, setDiff] = useState<ItemDiff | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    itemDiff(props.taskId, props.itemId).then(setDiff, (e: Error) => setError(e.message));
  }, [props.taskId, props.itemId]);
  if (error) return <div class="error">{error}</div>;
  if (!diff) return <div class="muted">loading diff…</div>;
  return (
    <div class="diff" data-testid="diff">
      <div class="muted">
        {diff.files.length} file(s), {diff.risky} flagged{diff.source === 'preview' ? ' (preview only)' : ''}
        {diff.truncated ? ', cut short' : ''}
      </div>
      {diff.files.map((f) => (
        <FileDiff key={f.path} file={f} />
      ))}
    </div>
  );
}

/** One file: its header and risks, and its lines unless collapsed. */
function FileDiff({ file }: { file: DiffFile }) {
  const [open, setOpen] = useState(!file.collapsed);
  return (
    <section class={`diff-file${file.risks.length ? ' risky' : ''}`} data-testid="diff-file" data-path={file.path}>
      <header>
        <code>{file.old_path ? `${file.old_path} → ${file.path}` : file.path}</code> <span class="muted">{file.status}</span>{' '}
        <span class="add">+{file.additions}</span> <span class="del">-{file.deletions}</span>
        {file.risks.map((r) => (
          <span class="risk-tag" key={r}>
            {r}
          </span>
        ))}
        {file.collapsed ? (
          <button type="button" class="link" onClick={() => setOpen(!open)} data-testid="diff-expand">
            {open ? 'collapse' : `show ${file.lines.length} lines`}
          </button>
        ) : null}
      </header>
      {open ? (
        <table class="diff-lines">
          <tbody>
            {file.lines.map((l, i) => (
              <tr key={i} class={`${l.kind}${l.risks ? ' risky-line' : ''}`} data-testid={l.risks ? 'risky-line' : undefined}>
                <td class="ln">{l.old ?? ''}</td>
                <td class="ln">{l.new ?? ''}</td>
                <td class="code">
                  <code>
                    {l.kind === 'add' ? '+' : l.kind === 'del' ? '-' : l.kind === 'ctx' ? ' ' : ''}
                    {l.text}
                  </code>
                  {l.risks ? <span class="risk-reason">{l.risks.join(', ')}</span> : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <div class="muted collapsed" data-testid="diff-collapsed">
          collapsed: {file.lines.length} lines
        </div>
      )}
    </section>
  );
}

/** Command output, collapsed: the exit code and last lines visible, the full log from the artifact store on demand. */
import { useState } from 'preact/hooks';
import { artifactText } from '../api';
import { lastLines } from '../format';

const TAIL_LINES = 6;

/** One command's output. `outputRef` is `artifact://<task>/<name>` when the full log was stored. */
export function LogView(props: { taskId: string; label?: string | null; exitCode?: unknown; output: string; outputRef?: unknown }) {
  const [full, setFull] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const name = typeof props.outputRef === 'string' ? props.outputRef.split('/').pop() ?? null : null;
  const total = props.output.split('\n').length;
  const load = async (): Promise<void> => {
    if (!name) return;
    try {
      setFull(await artifactText(props.taskId, name));
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };
  return (
    <div class="log" data-testid="log">
      <div class="log-head">
        {props.label ? <span class="log-label">{props.label}</span> : null}
        {props.exitCode !== undefined && props.exitCode !== null ? <span class={`exit ${props.exitCode === 0 ? 'ok' : 'bad'}`}>exit {String(props.exitCode)}</span> : null}
        <span class="muted">{total} lines</span>
      </div>
      {full === null ? (
        <pre class="log-tail" data-testid="log-tail">{lastLines(props.output, TAIL_LINES)}</pre>
      ) : (
        <pre class="log-full" data-testid="log-full">{full}</pre>
      )}
      {full === null && (name || total > TAIL_LINES) ? (
        <button type="button" class="link" onClick={() => (name ? void load() : setFull(props.output))} data-testid="log-more">
          Show full log
        </button>
      ) : null}
      {error ? <div class="error">{error}</div> : null}
    </div>
  );
}

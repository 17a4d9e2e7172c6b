/** The form that submits a task: repository, goal, planner, budget and policy. */
import { useState } from 'preact/hooks';
import { api } from '../api';
import { useSubmitRefusal } from '../role';
import { navigate } from '../router';

const lines = (s: string): string[] =>
  s
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);

/** Submits `POST /v1/tasks` and opens the new task; disabled, saying why, for a caller who may not submit. */
export function SubmitForm() {
  const refusal = useSubmitRefusal();
  const [error, setError] = useState<string | null>(null);
  const [planner, setPlanner] = useState<'recipe' | 'llm'>('llm');
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    const f = new FormData(e.target as HTMLFormElement);
    const s = (k: string): string => String(f.get(k) ?? '').trim();
    const num = (k: string): number | undefined => (s(k) === '' ? undefined : Number(s(k)));
    const budget = Object.fromEntries(
      (['max_steps', 'max_tokens', 'max_usd', 'max_wall_clock_minutes'] as const).flatMap((k) => (num(k) === undefined ? [] : [[k, num(k)]])),
    );
    const body = {
      repo: s('repo'),
      goal: s('goal'),
      ...(s('base_branch') ? { base_branch: s('base_branch') } : {}),
      planner:
        planner === 'recipe'
          ? { kind: 'recipe', steps: lines(s('steps')).map((run) => ({ run })) }
          : { kind: 'llm', provider: s('provider') || 'gemini', ...(s('model') ? { model: s('model') } : {}) },
      budget,
      policy: {
        protected_paths: lines(s('protected_paths')),
        approval_commands: lines(s('approval_commands')),
        require_plan_approval: f.get('require_plan_approval') === 'on',
      },
      ...(s('team') ? { team: s('team') } : {}),
      labels: s('labels')
        .split(',')
        .map((l) => l.trim())
        .filter(Boolean),
    };
    try {
      const r = await api<{ task_id: string }>('POST', '/v1/tasks', body);
      navigate(`/tasks/${encodeURIComponent(r.task_id)}`);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };
  return (
    <main class="submit">
      <h1>New task</h1>
      {refusal ? (
        <p class="muted" data-testid="submit-refused">
          {refusal}
        </p>
      ) : null}
      <form onSubmit={(e) => void submit(e)} data-testid="submit-form">
        <fieldset class="plain" disabled={refusal !== null} title={refusal ?? undefined}>
          <label>
            Repository <input name="repo" required placeholder="https://git.example/org/repo.git" />
          </label>
          <label>
            Base branch <input name="base_branch" placeholder="main" />
          </label>
          <label>
            Goal <textarea name="goal" required rows={4} />
          </label>
          <fieldset>
            <legend>Planner</legend>
            <label>
              <input type="radio" name="planner" checked={planner === 'llm'} onChange={() => setPlanner('llm')} /> model
            </label>
            <label>
              <input type="radio" name="planner" checked={planner === 'recipe'} onChange={() => setPlanner('recipe')} /> recipe
            </label>
            {planner === 'llm' ? (
              <div class="row">
                <label>
                  Provider
                  <select name="provider">
                    <option value="gemini">gemini</option>
                    <option value="openai">openai-compatible</option>
                  </select>
                </label>
                <label>
                  Model <input name="model" placeholder="gemini-2.5-flash" />
                </label>
              </div>
            ) : (
              <label>
                Steps, one command a line <textarea name="steps" rows={4} required />
              </label>
            )}
          </fieldset>
          <fieldset class="row">
            <legend>Budget</legend>
            <label>
              steps <input name="max_steps" type="number" min="1" />
            </label>
            <label>
              tokens <input name="max_tokens" type="number" min="0" />
            </label>
            <label>
              USD <input name="max_usd" type="number" min="0" step="any" />
            </label>
            <label>
              minutes <input name="max_wall_clock_minutes" type="number" min="1" />
            </label>
          </fieldset>
          <fieldset>
            <legend>Policy</legend>
            <label>
              Protected paths, one glob a line <textarea name="protected_paths" rows={2} />
            </label>
            <label>
              Commands needing approval, one regex a line <textarea name="approval_commands" rows={2} />
            </label>
            <label>
              <input type="checkbox" name="require_plan_approval" /> approve the plan first
            </label>
          </fieldset>
          <div class="row">
            <label>
              Team <input name="team" />
            </label>
            <label>
              Labels, comma-separated <input name="labels" />
            </label>
          </div>
          <button type="submit" class="primary">
            Submit
          </button>
          {error ? <div class="error">{error}</div> : null}
        </fieldset>
      </form>
    </main>
  );
}

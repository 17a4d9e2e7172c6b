/** The inbox filters: repo, requester, team, label, age. */
import type { InboxFilter } from '../inbox-data';
import { KINDS } from '../kinds';

const FIELDS: readonly { key: Exclude<keyof InboxFilter, 'kind'>; label: string; type?: 'text' | 'number' }[] = [
  { key: 'repo', label: 'repo' },
  { key: 'requester', label: 'requester' },
  { key: 'team', label: 'team' },
  { key: 'label', label: 'label' },
  { key: 'older_than_minutes', label: 'older than (min)', type: 'number' },
];

/** Filter inputs; each change calls `onChange` with the whole filter. */
export function Filters(props: { value: InboxFilter; onChange: (f: InboxFilter) => void }) {
  return (
    <form class="filters" onSubmit={(e) => e.preventDefault()} data-testid="filters">
      <label>
        kind
        <select
          name="kind"
          value={props.value.kind ?? ''}
          onChange={(e) => {
            const v = (e.target as HTMLSelectElement).value;
            const next = { ...props.value };
            if (v) next.kind = v;
            else delete next.kind;
            props.onChange(next);
          }}
        >
          <option value="">all</option>
          {KINDS.map((k) => (
            <option key={k.kind} value={k.kind}>
              {k.label}
            </option>
          ))}
        </select>
      </label>
      {FIELDS.map((f) => (
        <label key={f.key}>
          {f.label}
          <input
            inputMode={f.type === 'number' ? 'numeric' : 'text'}
            name={f.key}
            value={props.value[f.key] ?? ''}
            onChange={(e) => {
              const v = (e.target as HTMLInputElement).value.trim();
              const next = { ...props.value };
              if (v) next[f.key] = v;
              else delete next[f.key];
              props.onChange(next);
            }}
          />
        </label>
      ))}
    </form>
  );
}

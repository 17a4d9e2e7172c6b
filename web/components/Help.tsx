/** The keyboard help overlay (`?`). */
const KEYS: readonly [string, string][] = [
  ['j / k', 'next / previous card'],
  ['Enter', 'open the task'],
  ['a', 'approve'],
  ['r', 'reject (with a comment)'],
  ['c', 'request changes (with a comment)'],
  ['?', 'this help'],
  ['Esc', 'close'],
];

/** Lists the shortcuts. */
export function Help(props: { onClose: () => void }) {
  return (
    <div class="overlay" role="dialog" aria-label="Keyboard shortcuts" data-testid="help" onClick={props.onClose}>
      <div class="panel">
        <h2>Keyboard</h2>
        <dl>
          {KEYS.map(([k, v]) => [<dt key={k}>{k}</dt>, <dd key={`${k}-d`}>{v}</dd>])}
        </dl>
      </div>
    </div>
  );
}

/**
 * `npm run tokens -- create --name ci --role submitter --team platform [--team x]`, `list`, `revoke <id>`:
 * the operator's API tokens in DATA_DIR (read from the environment as the backend reads it).
 */
import { parseArgs } from 'node:util';
import { Role, TeamName } from '../domain/access';
import { ApiTokenStore, type ApiTokenRecord } from '../api/auth/tokens';
import { loadConfig } from './config';

const USAGE = `usage:
  npm run tokens -- create --name <name> --role viewer|submitter|approver|admin [--team <team>]...
  npm run tokens -- list
  npm run tokens -- revoke <id>`;

/** Thrown for a command line that does not parse; the message says what to type instead. */
class UsageError extends Error {
  override readonly name = 'UsageError';
}

function row(r: ApiTokenRecord): string {
  return [r.id, r.name, r.role, r.teams.join(',') || '-', r.created_at, r.revoked_at ? `revoked ${r.revoked_at}` : 'active'].join('\t');
}

/** Runs one command; what it prints goes to `out` (the new token alone on stdout, so scripts can capture it). */
export function runTokensCli(argv: string[], store: ApiTokenStore, out: { stdout: (s: string) => void; stderr: (s: string) => void }): void {
  const [command, ...rest] = argv;
  if (command === 'create') {
    const { values, positionals } = parseArgs({
      args: rest,
      options: { name: { type: 'string' }, role: { type: 'string' }, team: { type: 'string', multiple: true } },
      allowPositionals: true,
    });
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    if (!values.name || values.name.length > 100) throw new UsageError('--name is required (1-100 characters)');
    const role = Role.safeParse(values.role);
    if (!role.success) throw new UsageError(`--role must be one of ${Role.options.join(', ')}`);
    const teams = values.team ?? [];
    for (const team of teams) if (!TeamName.safeParse(team).success) throw new UsageError(`--team ${JSON.stringify(team)} is not a team name`);
    if (role.data !== 'admin' && teams.length === 0) out.stderr('warning: a token in no team sees no task; add --team\n');
    const { token, record } = store.create({ name: values.name, role: role.data, teams });
    out.stderr(`created API token ${record.id} (${record.name}, ${record.role}, teams: ${teams.join(', ') || 'none'}); it is shown only now:\n`);
    out.stdout(`${token}\n`);
    return;
  }
  if (command === 'list' && rest.length === 0) {
    out.stdout(`${['id', 'name', 'role', 'teams', 'created_at', 'status'].join('\t')}\n`);
    for (const r of store.list()) out.stdout(`${row(r)}\n`);
    return;
  }
  if (command === 'revoke' && rest.length === 1) {
    const r = store.revoke(rest[0]!);
    out.stderr(`revoked API token ${r.id} (${r.name}) at ${r.revoked_at}\n`);
    return;
  }
  throw new UsageError(command === undefined ? 'no command' : `unknown command or arguments: ${argv.join(' ')}`);
}

function main(): void {
  try {
    const cfg = loadConfig();
    runTokensCli(process.argv.slice(2), new ApiTokenStore(cfg.DATA_DIR), {
      stdout: (s) => process.stdout.write(s),
      stderr: (s) => process.stderr.write(s),
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${err instanceof UsageError ? `${USAGE}\n` : ''}`);
    process.exit(2);
  }
}

if (require.main === module) main();

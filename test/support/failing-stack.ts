/**
 * A backend (API and worker, in this process) that, once its worker's run loop has failed, prints what its own
 * `/healthz` and `/livez` answer as one JSON line and exits. It runs as a child process of a test because the SDK
 * never releases a worker whose run loop failed, so the process that held it cannot end cleanly otherwise.
 */
import { loadConfig } from '../../workers/config';
import { createLogger } from '../../workers/log';
import { startStack } from '../../workers/stack';

async function main(): Promise<void> {
  const stack = await startStack(loadConfig(), createLogger({ level: 'warn', component: 'failing-stack' }));
  process.stdout.write(`${JSON.stringify({ ready: stack.url })}\n`);
  const failure = await stack.failure;
  const health = await fetch(`${stack.url}/healthz`);
  const live = await fetch(`${stack.url}/livez`);
  process.stdout.write(
    `${JSON.stringify({ failure: String(failure), healthz: { status: health.status, body: await health.json() }, livez: { status: live.status } })}\n`,
  );
  process.exit(0);
}

/** Set by the test that spawns this file; the test runner, which loads every file under test/, runs nothing here. */
export const FAILING_STACK_ENV = 'AGENT_INBOX_FAILING_STACK';

if (process.env[FAILING_STACK_ENV] === '1') {
  main().catch((err: unknown) => {
    process.stderr.write(`failing-stack: ${String(err)}\n`);
    process.exit(2);
  });
}

/**
 * `npm start`: runs the whole backend until SIGINT or SIGTERM, or until a part of it fails (then exits 1,
 * so a supervisor or Kubernetes restarts it instead of leaving an API that answers for a dead worker).
 */
import { loadConfig, secretVariables } from './config';
import { createLogger } from './log';
import { startStack } from './stack';

/** Exit code of a backend whose worker's run loop ended on its own. */
const EXIT_PART_FAILED = 1;
/**
 * How long a backend whose worker failed may take to stop before it exits anyway: the SDK may never release a
 * failed worker's native resources (its connection then refuses to close), and a restart must not wait on that.
 */
const FAILED_STOP_GRACE_MS = 30_000;

async function main(): Promise<void> {
  const cfg = loadConfig();
  // The secrets are in cfg now: child processes (git, the embedded Temporal server) need not inherit them.
  for (const name of secretVariables(cfg)) delete process.env[name];
  const log = createLogger({ level: cfg.LOG_LEVEL, component: 'agent-inbox' });
  const stack = await startStack(cfg, log);
  let stopping = false;
  const shutdown = (reason: string, code: number): void => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { reason });
    stack.stop().then(
      () => process.exit(code),
      (err: unknown) => {
        log.error('shutdown failed', { error: err });
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT', 0));
  process.on('SIGTERM', () => shutdown('SIGTERM', 0));
  void stack.failure.then((err) => {
    log.error('a part of the backend stopped; exiting', { error: err });
    setTimeout(() => {
      log.error('stopping took too long after the failure; exiting without waiting', { grace_ms: FAILED_STOP_GRACE_MS });
      process.exit(EXIT_PART_FAILED);
    }, FAILED_STOP_GRACE_MS).unref();
    shutdown('worker failed', EXIT_PART_FAILED);
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`agent-inbox failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

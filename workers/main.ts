/**
 * `npm start`: runs the whole backend until SIGINT or SIGTERM.
 */
import { loadConfig } from './config';
import { createLogger } from './log';
import { startStack } from './stack';

async function main(): Promise<void> {
  const cfg = loadConfig();
  const log = createLogger({ level: cfg.LOG_LEVEL, component: 'agent-inbox' });
  const stack = await startStack(cfg, log);
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { signal });
    stack.stop().then(
      () => process.exit(process.exitCode ?? 0),
      (err: unknown) => {
        log.error('shutdown failed', { error: err });
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

main().catch((err: unknown) => {
  process.stderr.write(`agent-inbox failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

/**
 * Process configuration, parsed once from the environment; a bad value fails fast naming the variable.
 */
import path from 'node:path';
import { z } from 'zod';

/** Every environment variable the backend reads. */
export const Config = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().default('127.0.0.1'),
  DATA_DIR: z.string().default('./.data'),
  TEMPORAL_ADDRESS: z.string().optional(),
  TEMPORAL_NAMESPACE: z.string().default('default'),
  /** Ports of the embedded dev server (used only when TEMPORAL_ADDRESS is unset). */
  TEMPORAL_PORT: z.coerce.number().int().min(1).max(65535).default(7233),
  TEMPORAL_UI_PORT: z.coerce.number().int().min(1).max(65535).default(8233),
  TEMPORAL_TASK_QUEUE: z.string().default('agent-tasks'),
  /** Where the Temporal CLI is cached when it has to be installed. */
  TEMPORAL_CLI_CACHE: z.string().default('./.cache/temporal'),
  /** Only the process driver exists so far; gVisor and Kubernetes drivers are their own work. */
  SANDBOX_DRIVER: z.enum(['process']).default('process'),
  /** Which parts this process runs: `api`, `worker`, or both (scale each out separately in production). */
  ROLES: z
    .string()
    .default('api,worker')
    .transform((v) => v.split(',').map((r) => r.trim()).filter(Boolean))
    .pipe(z.array(z.enum(['api', 'worker'])).min(1)),
  /** Workflows a worker keeps in memory; parked tasks beyond it replay from history when touched. */
  WORKER_MAX_CACHED_WORKFLOWS: z.coerce.number().int().positive().default(250),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  API_MAX_BODY_BYTES: z.coerce.number().int().positive().default(512 * 1024),
});
export type Config = z.infer<typeof Config>;

/** Thrown when the environment does not parse; the message names each bad variable. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Parse the environment (or `env`), resolving paths against the working directory. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = Config.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${lines.join('; ')}`);
  }
  const cfg = parsed.data;
  return { ...cfg, DATA_DIR: path.resolve(cfg.DATA_DIR), TEMPORAL_CLI_CACHE: path.resolve(cfg.TEMPORAL_CLI_CACHE) };
}

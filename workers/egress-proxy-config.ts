/**
 * Configuration of the standalone egress proxy (the cluster's Deployment), parsed once from the
 * environment; a bad value fails fast naming the variable.
 */
import { z } from 'zod';
import { operatorAddressError } from '../activities/egress/destination';
import { MIN_SECRET_CHARS } from '../activities/egress/token';
import { egressEntryError } from '../domain/egress';

const port = (fallback: number) => z.coerce.number().int().min(1).max(65535).default(fallback);

/**
 * `EGRESS_HOSTS` (the worker's and the standalone proxy's): `name=addr[,addr] name2=addr …`, whitespace between
 * entries, a name repeated adds addresses; each name a domain. An address may carry its port (`10.0.0.5:8080`,
 * `[fd00::5]:8080`) and a private or loopback one must; a name mapped with ports reaches those only.
 */
export function parseEgressHosts(text: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const entry of text.split(/\s+/).filter(Boolean)) {
    const eq = entry.indexOf('=');
    const name = entry.slice(0, eq);
    const addresses = entry.slice(eq + 1).split(',').filter(Boolean);
    const why = eq <= 0 ? 'no name' : name.startsWith('*.') ? 'a name, not a wildcard' : egressEntryError(name);
    if (why !== null || addresses.length === 0) throw new Error(`"${entry}": write name=address[,address] (a domain, then addresses)${why ? `: ${why}` : ''}`);
    const bad = addresses.map(operatorAddressError).find((e) => e !== null);
    if (bad !== undefined) throw new Error(`"${entry}": ${bad}`);
    out[name] = [...(out[name] ?? []), ...addresses];
  }
  return out;
}

/** The `EGRESS_HOSTS` variable as a zod schema: unset is empty, a bad entry is an issue naming it. */
export const EgressHostsVar = z
  .string()
  .default('')
  .transform((v, ctx) => {
    try {
      return parseEgressHosts(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });

/** Every environment variable the standalone egress proxy reads. */
export const EgressProxyConfig = z.object({
  EGRESS_PROXY_HOST: z.string().default('0.0.0.0'),
  EGRESS_PROXY_PORT: port(3128),
  /** The report endpoint's listener; bind it where the worker reaches it and sandboxes do not. */
  EGRESS_PROXY_ADMIN_HOST: z.string().default('0.0.0.0'),
  EGRESS_PROXY_ADMIN_PORT: port(3129),
  /** Shared with the worker: signs task tokens and authenticates report requests. */
  EGRESS_PROXY_SECRET: z.string().min(MIN_SECRET_CHARS, `at least ${MIN_SECRET_CHARS} characters`),
  EGRESS_HOSTS: EgressHostsVar,
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
});
/** Every environment variable the standalone egress proxy reads. */
export type EgressProxyConfig = z.infer<typeof EgressProxyConfig>;

/** The configuration from `env`, or an error naming each bad variable. */
export function loadEgressProxyConfig(env: NodeJS.ProcessEnv = process.env): EgressProxyConfig {
  const parsed = EgressProxyConfig.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new Error(`bad egress proxy configuration:\n  ${lines.join('\n  ')}`);
  }
  return parsed.data;
}

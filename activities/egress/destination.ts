/**
 * Where a request may go: the proxy resolves the name itself (the operator's EGRESS_HOSTS first,
 * then DNS), checks every address, and connects only to an address it checked, so a second lookup
 * cannot answer differently (DNS rebinding).
 */
import dns from 'node:dns';
import net from 'node:net';
import { normalizeHost } from '../../domain/egress';
import { refusedAddress } from './addresses';

/** How the proxy turns a name into addresses when the operator did not map it. */
export type Lookup = (host: string) => Promise<string[]>;

/** How long resolving one name may take. */
export const RESOLVE_TIMEOUT_MS = 5_000;

/** The addresses of a name (every one the resolver returned), as the default `Lookup`. */
export const systemLookup: Lookup = async (host) => (await dns.promises.lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** A destination the proxy checked: the addresses it may connect to, in order. */
export interface Destination {
  addresses: string[];
}

/** A destination the proxy will not connect to, with why. */
export class DestinationRefused extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'DestinationRefused';
  }
}

/** The operator's name -> addresses map, with names normalised and every address checked to be an IP literal. */
export function operatorHosts(hosts: Record<string, string[]>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [name, addrs] of Object.entries(hosts)) {
    const bad = addrs.find((a) => net.isIP(a) === 0);
    if (bad !== undefined || addrs.length === 0) throw new Error(`EGRESS_HOSTS: "${name}" must map to IP addresses (got "${addrs.join(',')}")`);
    out.set(normalizeHost(name), [...addrs]);
  }
  return out;
}

/**
 * Resolve `host` and check every address: a name any of whose addresses is refused is refused as a
 * whole (a resolver that mixes a public and a private answer is an attack, not a fallback).
 */
export async function resolveDestination(host: string, hosts: Map<string, string[]>, lookup: Lookup): Promise<Destination> {
  const name = normalizeHost(host);
  const mapped = hosts.get(name);
  // The operator's own names are exempt from the address refusal: that is what naming them is for.
  if (mapped) return { addresses: mapped };
  const addresses = net.isIP(name) !== 0 ? [name] : await withTimeout(lookup(name), RESOLVE_TIMEOUT_MS, `resolving ${name} timed out`);
  if (addresses.length === 0) throw new DestinationRefused('the name has no address');
  for (const a of addresses) {
    const why = refusedAddress(a);
    if (why !== null) throw new DestinationRefused(`resolves to a ${why} (${a})`);
  }
  return { addresses };
}

async function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DestinationRefused(message)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } catch (err) {
    if (err instanceof DestinationRefused) throw err;
    throw new DestinationRefused(`the name does not resolve (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  } finally {
    clearTimeout(timer);
  }
}

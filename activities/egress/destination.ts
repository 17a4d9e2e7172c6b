/**
 * Where a request may go: the proxy resolves the name itself (the operator's EGRESS_HOSTS first,
 * then DNS), checks every address, and connects only to an address it checked, so a second lookup
 * cannot answer differently (DNS rebinding).
 */
import dns from 'node:dns';
import net from 'node:net';
import { normalizeHost } from '../../domain/egress';
import { isHostAddress, refusedAddress } from './addresses';

/** How the proxy turns a name into addresses when the operator did not map it. */
export type Lookup = (host: string) => Promise<string[]>;

/** How long resolving one name may take. */
export const RESOLVE_TIMEOUT_MS = 5_000;

/** The addresses of a name (every one the resolver returned), as the default `Lookup`. */
export const systemLookup: Lookup = async (host) => (await dns.promises.lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** A destination the proxy checked: the addresses it may connect to, in order. */
export interface Destination {
  addresses: string[];
  /** Whether the operator named it in EGRESS_HOSTS (exempt from the private-address refusal). */
  operator: boolean;
}

/** A destination the proxy will not connect to, with why. */
export class DestinationRefused extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'DestinationRefused';
  }
}

/** One address the operator maps a name to; with a port, the name reaches that address on that port only. */
export interface OperatorAddress {
  address: string;
  port?: number;
}

const WITH_PORT = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/;

/** `address`, `ipv4:port` or `[ipv6]:port` as an operator address, or null when it is none of those. */
export function parseOperatorAddress(text: string): OperatorAddress | null {
  if (net.isIP(text) !== 0) return { address: text };
  const m = WITH_PORT.exec(text);
  if (!m) return null;
  const address = m[1] ?? m[2]!;
  const port = Number(m[3]);
  // A bracketed address must be IPv6, a bare one IPv4: `[1.2.3.4]:80` and `::1:80` are typos, not addresses.
  if (net.isIP(address) !== (m[1] !== undefined ? 6 : 4) || port < 1 || port > 65535) return null;
  return { address, port };
}

/**
 * Why `text` cannot be one of the addresses the operator maps a name to, or null when it can: an IP
 * address, with its port when the address is loopback, private or otherwise special (without one, the
 * name would open every service listening there: the worker's API, Temporal's HTTP API …).
 */
export function operatorAddressError(text: string): string | null {
  const parsed = parseOperatorAddress(text);
  if (parsed === null) return `"${text}" is not an IP address, optionally with its port (10.0.0.5:8080, [fd00::5]:8080)`;
  const why = parsed.port === undefined ? refusedAddress(parsed.address) : null;
  if (why !== null) {
    const example = net.isIPv6(parsed.address) ? `[${parsed.address}]:8080` : `${parsed.address}:8080`;
    return `maps to ${parsed.address}, a ${why}: name its port (${example})`;
  }
  return null;
}

/** The operator's name -> addresses map, with names normalised and every address checked by {@link operatorAddressError}. */
export function operatorHosts(hosts: Record<string, string[]>): Map<string, OperatorAddress[]> {
  const out = new Map<string, OperatorAddress[]>();
  for (const [name, addrs] of Object.entries(hosts)) {
    if (addrs.length === 0) throw new Error(`EGRESS_HOSTS: "${name}" maps to no address`);
    const why = addrs.map(operatorAddressError).find((e) => e !== null);
    if (why !== undefined) throw new Error(`EGRESS_HOSTS: "${name}" ${why}`);
    out.set(normalizeHost(name), addrs.map((a) => parseOperatorAddress(a)!));
  }
  return out;
}

/**
 * Resolve `host` for a connection to `port` and check every address: a name any of whose addresses
 * is refused is refused as a whole (a resolver that mixes a public and a private answer is an attack,
 * not a fallback). A name the operator mapped with ports reaches those ports only: its addresses are
 * usually private, and every other service listening there is not the operator's mirror.
 */
export async function resolveDestination(host: string, port: number, hosts: Map<string, OperatorAddress[]>, lookup: Lookup): Promise<Destination> {
  const name = normalizeHost(host);
  const mapped = hosts.get(name);
  if (mapped) {
    const addresses = [...new Set(mapped.filter((a) => a.port === undefined || a.port === port).map((a) => a.address))];
    if (addresses.length === 0) throw new DestinationRefused(`the operator maps ${name} to other ports only`);
    return { addresses, operator: true };
  }
  const addresses = net.isIP(name) !== 0 ? [name] : await withTimeout(lookup(name), RESOLVE_TIMEOUT_MS, `resolving ${name} timed out`);
  if (addresses.length === 0) throw new DestinationRefused('the name has no address');
  for (const a of addresses) {
    // Before the ranges: the reason should say it is this host, whichever range its address is in.
    if (isHostAddress(a)) throw new DestinationRefused(`resolves to this host's own address (${a})`);
    const why = refusedAddress(a);
    if (why !== null) throw new DestinationRefused(`resolves to a ${why} (${a})`);
  }
  return { addresses, operator: false };
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

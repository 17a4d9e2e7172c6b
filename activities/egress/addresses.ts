/**
 * Which IP addresses the egress proxy refuses to connect to for a name the operator did not map
 * itself: loopback, private, carrier-grade NAT, link-local (cloud metadata among them), unique-local,
 * unspecified, multicast, broadcast and other special-purpose ranges, and the IPv6 forms that embed
 * one of those IPv4 addresses (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64, 6to4).
 */
import net from 'node:net';
import os from 'node:os';

/** One special-purpose range and the words a reviewer reads when a name resolves into it. */
interface Range {
  net: string;
  prefix: number;
  why: string;
}

const V4_RANGES: readonly Range[] = [
  // Listed before link-local so the reason names it: the address every cloud's metadata service answers on.
  { net: '169.254.169.254', prefix: 32, why: 'cloud metadata address' },
  { net: '0.0.0.0', prefix: 8, why: 'unspecified address' },
  { net: '10.0.0.0', prefix: 8, why: 'private address' },
  { net: '100.64.0.0', prefix: 10, why: 'carrier-grade NAT address' },
  { net: '127.0.0.0', prefix: 8, why: 'loopback address' },
  { net: '169.254.0.0', prefix: 16, why: 'link-local address' },
  { net: '172.16.0.0', prefix: 12, why: 'private address' },
  { net: '192.0.0.0', prefix: 24, why: 'special-purpose address' },
  { net: '192.0.2.0', prefix: 24, why: 'documentation address' },
  { net: '192.168.0.0', prefix: 16, why: 'private address' },
  { net: '198.18.0.0', prefix: 15, why: 'benchmarking address' },
  { net: '198.51.100.0', prefix: 24, why: 'documentation address' },
  { net: '203.0.113.0', prefix: 24, why: 'documentation address' },
  { net: '224.0.0.0', prefix: 4, why: 'multicast address' },
  { net: '255.255.255.255', prefix: 32, why: 'broadcast address' },
  { net: '240.0.0.0', prefix: 4, why: 'reserved address' },
];

const V6_RANGES: readonly Range[] = [
  { net: 'fd00:ec2::254', prefix: 128, why: 'cloud metadata address' },
  { net: '::', prefix: 128, why: 'unspecified address' },
  { net: '::1', prefix: 128, why: 'loopback address' },
  { net: 'fe80::', prefix: 10, why: 'link-local address' },
  { net: 'fec0::', prefix: 10, why: 'site-local address' },
  { net: 'fc00::', prefix: 7, why: 'unique-local address' },
  { net: 'ff00::', prefix: 8, why: 'multicast address' },
  { net: '100::', prefix: 64, why: 'discard address' },
  { net: '2001:db8::', prefix: 32, why: 'documentation address' },
  // Teredo tunnels reach an obfuscated IPv4 address we cannot check.
  { net: '2001::', prefix: 32, why: 'Teredo address' },
  // Local-use NAT64 (RFC 8215) translates to whatever the local translator is told to.
  { net: '64:ff9b:1::', prefix: 48, why: 'local-use NAT64 address' },
];

/** One BlockList per reason, checked in order, so a refusal says which rule matched. */
function blockLists(ranges: readonly Range[], family: 'ipv4' | 'ipv6'): { list: net.BlockList; why: string }[] {
  return ranges.map((r) => {
    const list = new net.BlockList();
    list.addSubnet(r.net, r.prefix, family);
    return { list, why: r.why };
  });
}

const V4 = blockLists(V4_RANGES, 'ipv4');
const V6 = blockLists(V6_RANGES, 'ipv6');

/** The 16 bytes of an IPv6 address (no zone), or null when it is not one. */
export function ipv6Bytes(addr: string): Uint8Array | null {
  if (net.isIPv6(addr) === false) return null;
  let text = addr;
  const out = new Uint8Array(16);
  // A trailing dotted quad (`::ffff:1.2.3.4`) stands for the last two groups.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let tail: number[] = [];
  if (quad) {
    tail = quad[1]!.split('.').map(Number);
    text = text.slice(0, -quad[1]!.length) + '0:0';
  }
  const [head, rest] = text.includes('::') ? text.split('::') : [text, undefined];
  const groups = (s: string | undefined) => (s ? s.split(':').filter((g) => g !== '') : []);
  const left = groups(head);
  const right = groups(rest);
  const all = rest === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  if (all.length !== 8) return null;
  all.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  if (quad) out.set(tail, 12);
  return out;
}

/** The IPv4 address an IPv6 address carries and delivers to, when it is of a form that does. */
function embeddedV4(b: Uint8Array): string | null {
  const quad = (at: number) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
  const zero = (from: number, to: number) => b.subarray(from, to).every((x) => x === 0);
  // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (the deprecated compatible form; :: and ::1 are caught before).
  if (zero(0, 10) && ((b[10] === 0xff && b[11] === 0xff) || (b[10] === 0 && b[11] === 0))) return quad(12);
  // ::ffff:0:a.b.c.d, IPv4-translated (RFC 2765): what a stateless translator delivers to a.b.c.d.
  if (zero(0, 8) && b[8] === 0xff && b[9] === 0xff && b[10] === 0 && b[11] === 0) return quad(12);
  // 64:ff9b::a.b.c.d, the well-known NAT64 prefix.
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zero(4, 12)) return quad(12);
  // 2002:aabb:ccdd::/48, 6to4.
  if (b[0] === 0x20 && b[1] === 0x02) return quad(2);
  return null;
}

/**
 * Why the proxy must not connect to `address` for a name the operator did not map, or null when it
 * is an ordinary public address.
 */
export function refusedAddress(address: string): string | null {
  const bare = address.replace(/%.*$/, '');
  if (net.isIPv4(bare)) return V4.find((r) => r.list.check(bare, 'ipv4'))?.why ?? null;
  const bytes = ipv6Bytes(bare);
  if (!bytes) return 'not an IP address';
  const direct = V6.find((r) => r.list.check(bare, 'ipv6'))?.why;
  if (direct) return direct;
  const v4 = embeddedV4(bytes);
  if (v4 === null) return null;
  // The IPv4 address it carries is where a connection goes; judge that one.
  return refusedAddress(v4);
}

/** The addresses of this host's interfaces without zones: loopback too, unless `external` asks for the others only. */
export function hostAddresses(external = false): string[] {
  const all = Object.values(os.networkInterfaces()).flatMap((list) => list ?? []);
  return all.filter((i) => !(external && i.internal)).map((i) => i.address.replace(/%.*$/, ''));
}

/** An address without the IPv4-mapped prefix or a zone, in lower case, for comparing two spellings of one address. */
export function canonicalAddress(x: string): string {
  return x.replace(/^::ffff:(?=\d+\.)/i, '').replace(/%.*$/, '').toLowerCase();
}

/**
 * Whether `address` is one of this host's own on a network interface (a public address there reaches
 * every service listening on all interfaces, which no range check catches; loopback is a range of its own).
 */
export function isHostAddress(address: string): boolean {
  const c = canonicalAddress(address);
  return hostAddresses(true).some((a) => canonicalAddress(a) === c);
}

/**
 * The server name a TLS client asks for: the `server_name` extension of its ClientHello (RFC 8446
 * 4.1.2, RFC 6066 3), read from the first bytes a client sends through a CONNECT tunnel, so the
 * proxy can require it to be the host the tunnel was opened to. Every length is checked against the
 * bytes that hold it; the parser never reads past its input and never loops without consuming.
 */

/** Largest ClientHello the proxy waits for (real ones are 0.5-2 KiB; post-quantum key shares stay well below this). */
export const MAX_CLIENT_HELLO_BYTES = 16 * 1024;
/** Largest TLS record (RFC 8446 5.1: 2^14 bytes of plaintext). */
const MAX_RECORD_BYTES = 16 * 1024;
const RECORD_HEADER_BYTES = 5;
/** Records a ClientHello may be split over (real ones use one), so re-reading a trickled hello stays cheap. */
const MAX_RECORDS = 16;
const CONTENT_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const NAME_TYPE_HOST = 0;
const MAX_SESSION_ID = 32;
const MAX_HOST_NAME = 253;
const HOST_NAME = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$/;

/** What the bytes so far say: wait for more, the name asked for, or why they are refused. */
export type ClientHelloResult = { kind: 'incomplete' } | { kind: 'sni'; name: string } | { kind: 'refused'; reason: string };

class Malformed extends Error {}

/** Bounds-checked reads over one byte range. */
class Reader {
  private at = 0;
  constructor(private readonly buf: Uint8Array) {}
  get left(): number {
    return this.buf.length - this.at;
  }
  private take(n: number): Uint8Array {
    if (n > this.left) throw new Malformed('a length runs past its container');
    const out = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  u8(): number {
    return this.take(1)[0]!;
  }
  u16(): number {
    const b = this.take(2);
    return (b[0]! << 8) | b[1]!;
  }
  /** `n` bytes as a reader of their own. */
  sub(n: number): Reader {
    return new Reader(this.take(n));
  }
  bytes(n: number): Uint8Array {
    return this.take(n);
  }
  skip(n: number): void {
    this.take(n);
  }
}

/**
 * Read the ClientHello at the start of `buf` (possibly spread over several handshake records) and
 * return the host name of its `server_name` extension.
 */
export function parseClientHello(buf: Uint8Array): ClientHelloResult {
  const parts: Uint8Array[] = [];
  let have = 0;
  let need: number | null = null;
  let at = 0;
  for (let records = 0; ; records++) {
    if (records === MAX_RECORDS) return { kind: 'refused', reason: 'malformed ClientHello (split over too many records)' };
    if (buf.length - at < RECORD_HEADER_BYTES) return { kind: 'incomplete' };
    const type = buf[at]!;
    const major = buf[at + 1]!;
    const len = (buf[at + 3]! << 8) | buf[at + 4]!;
    if (type !== CONTENT_HANDSHAKE || major !== 3) return { kind: 'refused', reason: 'not TLS (the first record is not a TLS handshake)' };
    if (len === 0 || len > MAX_RECORD_BYTES) return { kind: 'refused', reason: 'malformed ClientHello (bad record length)' };
    if (buf.length - at - RECORD_HEADER_BYTES < len) return { kind: 'incomplete' };
    parts.push(buf.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + len));
    have += len;
    at += RECORD_HEADER_BYTES + len;
    if (need === null && have >= 4) {
      const head = concat(parts, 4);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return { kind: 'refused', reason: 'not TLS (the first handshake message is not a ClientHello)' };
      need = 4 + ((head[1]! << 16) | (head[2]! << 8) | head[3]!);
      if (need > MAX_CLIENT_HELLO_BYTES) return { kind: 'refused', reason: 'ClientHello too large' };
    }
    if (need !== null && have >= need) break;
  }
  try {
    return serverName(new Reader(concat(parts, need).subarray(4)));
  } catch (err) {
    if (err instanceof Malformed) return { kind: 'refused', reason: `malformed ClientHello (${err.message})` };
    throw err;
  }
}

function concat(parts: Uint8Array[], n: number): Uint8Array {
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    if (at >= n) break;
    const piece = p.subarray(0, n - at);
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}

function serverName(body: Reader): ClientHelloResult {
  if (body.u8() !== 3) throw new Malformed('not a TLS version');
  body.skip(1 + 32); // minor version, random
  const sessionId = body.u8();
  if (sessionId > MAX_SESSION_ID) throw new Malformed('session id too long');
  body.skip(sessionId);
  const suites = body.u16();
  if (suites === 0 || suites % 2 !== 0) throw new Malformed('bad cipher suite list');
  body.skip(suites);
  const compression = body.u8();
  if (compression === 0) throw new Malformed('no compression methods');
  body.skip(compression);
  if (body.left === 0) return { kind: 'refused', reason: 'no SNI (the ClientHello names no server)' };
  const extLen = body.u16();
  if (extLen !== body.left) throw new Malformed('extensions do not fill the message');
  const exts = body.sub(extLen);
  const seen = new Set<number>();
  let name: string | null = null;
  while (exts.left > 0) {
    const type = exts.u16();
    const data = exts.sub(exts.u16());
    if (seen.has(type)) throw new Malformed('an extension appears twice');
    seen.add(type);
    if (type === EXT_SERVER_NAME) name = hostName(data);
  }
  if (name === null) return { kind: 'refused', reason: 'no SNI (the ClientHello names no server)' };
  return { kind: 'sni', name };
}

function hostName(data: Reader): string {
  const list = data.sub(data.u16());
  if (data.left !== 0) throw new Malformed('bytes after the server name list');
  let name: string | null = null;
  while (list.left > 0) {
    const type = list.u8();
    const value = list.bytes(list.u16());
    if (type !== NAME_TYPE_HOST) continue;
    if (name !== null) throw new Malformed('two host names');
    if (value.length === 0 || value.length > MAX_HOST_NAME) throw new Malformed('bad host name length');
    const text = Buffer.from(value).toString('latin1');
    if (!HOST_NAME.test(text)) throw new Malformed('the host name has characters a host name cannot');
    name = text;
  }
  if (name === null) throw new Malformed('server_name without a host name');
  return name;
}

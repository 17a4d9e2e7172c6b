/**
 * Comparing secrets without the time taken saying how much of a guess matched: by SHA-256, or byte
 * strings of equal length.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/** The SHA-256 of `text` (UTF-8). */
export function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Whether `given` is `secret`, compared by hash so both sides have the same length whatever was sent. */
export function sameSecret(given: string, secret: string): boolean {
  return timingSafeEqual(sha256(given), sha256(secret));
}

/** Whether two byte strings are equal, in constant time once their lengths agree (a MAC's length is no secret). */
export function sameBytes(given: Buffer, expected: Buffer): boolean {
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * What one task's traffic did since its last report: requests let through, bytes relayed each way,
 * and refusals folded by (host, port, step, reason) into a bounded list.
 */
import type { BlockedRequest, EgressReport } from './types';

/** Distinct refusals a report lists; past this only `blocked_count` grows (a sandbox could otherwise fill the worker's memory). */
export const MAX_BLOCKED_LISTED = 100;
/** Characters of a refused host name kept (the longest DNS name); a sandbox chooses the names it is refused. */
export const MAX_REFUSED_HOST_CHARS = 253;
/** Characters of a refusal's reason kept (reasons quote what the client sent: an SNI, a Host header). */
export const MAX_REFUSED_REASON_CHARS = 400;

/** Counters and refusals of one task, reset by `take()`. */
export class Ledger {
  private allowed = 0;
  private sent = 0;
  private received = 0;
  private blockedCount = 0;
  private blocked = new Map<string, BlockedRequest>();

  /** A request or tunnel the proxy let through. */
  allow(): void {
    this.allowed += 1;
  }

  /** Bytes relayed to a destination and back. */
  bytes(sent: number, received: number): void {
    this.sent += sent;
    this.received += received;
  }

  /** A refused request; the same host, port, step and reason fold into one entry with a count. */
  refuse(given: Omit<BlockedRequest, 'count' | 'at'>, at = new Date()): void {
    this.blockedCount += 1;
    const r = { ...given, host: clip(given.host, MAX_REFUSED_HOST_CHARS), reason: clip(given.reason, MAX_REFUSED_REASON_CHARS) };
    const key = JSON.stringify([r.host, r.port, r.step, r.reason]);
    const prior = this.blocked.get(key);
    if (prior) prior.count += 1;
    else if (this.blocked.size < MAX_BLOCKED_LISTED) this.blocked.set(key, { ...r, at: at.toISOString(), count: 1 });
  }

  /** The report since the last call, which starts a new one. */
  take(): EgressReport {
    const report: EgressReport = {
      allowed: this.allowed,
      blocked: [...this.blocked.values()],
      blocked_count: this.blockedCount,
      bytes_sent: this.sent,
      bytes_received: this.received,
    };
    this.allowed = this.sent = this.received = this.blockedCount = 0;
    this.blocked = new Map();
    return report;
  }
}

/** `text` cut to `max` characters, with an ellipsis saying it was. */
function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}

/**
 * The contract between the egress proxy, the sandbox drivers that route a sandbox's traffic to it,
 * and the activities that report what it saw.
 */
import type { Server } from 'node:net';
import type { BlockedRequest } from '../../domain/egress';

export type { BlockedRequest };

/** What one task may reach right now: its phase's allowlist (patterns, presets expanded) and the step running. */
export interface EgressGrant {
  /** Host patterns (`example.com`, `*.example.com`), already within the operator's ceiling; empty: nothing. */
  allow: string[];
  /** The step the requests are attributed to (`setup 1`, `step 2`, `tool run (turn 5)`). */
  step: string;
}

/** What a task's traffic did since the last report. */
export interface EgressReport {
  allowed: number;
  blocked: BlockedRequest[];
  /** Refusals in all, including those past the bounded list above. */
  blocked_count: number;
  /** Bytes from the sandbox to destinations, and back, through the proxy. */
  bytes_sent: number;
  bytes_received: number;
}

/** The egress proxy as a sandbox driver uses it. */
export interface EgressProxyPort {
  /** Serve the connections accepted on `server` (a listener only this task's sandbox reaches) as task `taskId`'s. */
  serveTask(taskId: string, server: Server): void;
  /** Whether this process serves a listener for the task (after a worker restart it does not, until one is made again). */
  serves(taskId: string): boolean;
  /** Set what the task may reach from now on; narrowing it ends open tunnels the new grant does not admit. Null denies everything. */
  setGrant(taskId: string, grant: EgressGrant | null): void;
  /** The task's counters and refusals since the last call, which resets them. */
  take(taskId: string): EgressReport;
  /** Stop serving the task: close its listener and connections, forget its state. */
  release(taskId: string): void;
}

/**
 * Closing the backend's Temporal connection while a call waits to be retried: the call fails in its
 * caller, and the retry's timer does not throw out of the process. The frontend is a real gRPC server
 * that answers every DescribeNamespace with RESOURCE_EXHAUSTED, as a rate-limited Temporal does.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Server, ServerCredentials, status, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { connectTemporal } from '../workers/temporal-connection';

const SERVICE = '/temporal.api.workflowservice.v1.WorkflowService';
/** The client waits about this long before retrying a RESOURCE_EXHAUSTED call. */
const EXHAUSTED_BACKOFF_MS = 1_000;
const raw = (b: Buffer): Buffer => b;

describe('the Temporal connection', () => {
  const server = new Server();
  let address = '';
  let describes = 0;

  before(async () => {
    // An empty message is a valid GetSystemInfoResponse: the client's connection check passes.
    server.register(`${SERVICE}/GetSystemInfo`, (_call: ServerUnaryCall<Buffer, Buffer>, done: sendUnaryData<Buffer>) => done(null, Buffer.alloc(0)), raw, raw, 'unary');
    server.register(
      `${SERVICE}/DescribeNamespace`,
      (_call: ServerUnaryCall<Buffer, Buffer>, done: sendUnaryData<Buffer>) => {
        describes += 1;
        done({ code: status.RESOURCE_EXHAUSTED, details: 'namespace rate limit exceeded' });
      },
      raw,
      raw,
      'unary',
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    address = `127.0.0.1:${port}`;
  });

  after(() => server.forceShutdown());

  it('fails a call that was waiting to be retried when it closes, without throwing from the retry timer', async () => {
    let thrown: Error | null = null;
    const onUncaught = (err: Error): void => {
      thrown = err;
    };
    process.on('uncaughtException', onUncaught);
    after(() => process.off('uncaughtException', onUncaught));
    const { connection, close } = await connectTemporal(address);
    const call = connection.workflowService.describeNamespace({ namespace: 'default' });
    const outcome = call.then(
      () => 'resolved',
      (err: Error) => err,
    );
    while (describes === 0) await new Promise((r) => setTimeout(r, 10));
    await close();
    await close();
    // Past the retry's delay: the retry happened against the closed connection and was refused there.
    await new Promise((r) => setTimeout(r, EXHAUSTED_BACKOFF_MS * 1.5));
    assert.equal(thrown, null, `the retry threw out of its timer: ${String(thrown)}`);
    const err = await outcome;
    assert.ok(err instanceof Error, `the call ${String(err)}`);
    assert.equal((err as Error & { code?: number }).code, status.CANCELLED, err.message);
    assert.equal(describes, 1, 'no attempt reached the server after close');
  });
});

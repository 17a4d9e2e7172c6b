/**
 * The backend's client connection to Temporal, closable while calls are still retrying.
 *
 * The client retries a failed call (RESOURCE_EXHAUSTED, UNAVAILABLE, ...) from a timer. A retry that fires
 * after `close()` would ask the closed channel for a call, which throws inside that timer: an uncaught
 * exception that ends the process during a clean shutdown. Here a call the retry makes after close is
 * answered CANCELLED instead, so it rejects in its caller, which handles it like any failed call.
 */
import { InterceptingCall, Metadata, status, type Interceptor, type InterceptingListener } from '@grpc/grpc-js';
import { Connection, defaultGrpcRetryOptions, makeGrpcRetryInterceptor } from '@temporalio/client';
import type { Duration } from '@temporalio/common';

/** A connection and the one way to close it. */
export interface TemporalConnection {
  connection: Connection;
  /** Closes the channel; calls made after this (a retry's included) fail with CANCELLED. Safe to call twice. */
  close(): Promise<void>;
}

/** The call a grpc-js interceptor hands on to (the library does not export its name). */
type NextCall = ConstructorParameters<typeof InterceptingCall>[0];

/** What a call made after close hears: CANCELLED (which the client does not retry), on the next tick. */
function refusedCall(): NextCall {
  return {
    start(_metadata: Metadata, listener?: Partial<InterceptingListener>) {
      process.nextTick(() => listener?.onReceiveStatus?.({ code: status.CANCELLED, details: 'the connection to Temporal is closed', metadata: new Metadata() }));
    },
    cancelWithStatus() {},
    getPeer: () => '',
    sendMessageWithContext() {},
    sendMessage() {},
    startRead() {},
    halfClose() {},
    getAuthContext: () => null,
  };
}

/** Connects to the Temporal frontend at `address` (checking it answers), with the client's own retry policy. */
export async function connectTemporal(address: string, opts: { connectTimeout?: Duration } = {}): Promise<TemporalConnection> {
  let closed = false;
  // Inside the retry interceptor, so each attempt (a delayed one too) passes here before it reaches the channel.
  const refuseAfterClose: Interceptor = (options, nextCall) => new InterceptingCall(closed ? refusedCall() : nextCall(options));
  const connection = await Connection.connect({
    address,
    interceptors: [makeGrpcRetryInterceptor(defaultGrpcRetryOptions()), refuseAfterClose],
    ...(opts.connectTimeout ? { connectTimeout: opts.connectTimeout } : {}),
  });
  return {
    connection,
    close: async () => {
      if (closed) return;
      closed = true;
      await connection.close();
    },
  };
}

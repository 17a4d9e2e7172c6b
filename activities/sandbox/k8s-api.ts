/**
 * What every part of the pod driver shares about talking to the API server: the client module
 * (loaded on first use), the driver's error class, and how an API failure is described and classed.
 */
import type * as k8s from '@kubernetes/client-node';

/** The client module's type, for callers that load it through {@link kube}. */
export type KubeModule = typeof k8s;
// client-node is an ES module; loaded once, on first use, so the other drivers never pay for it.
let kubeModule: Promise<KubeModule> | null = null;

/** The Kubernetes client module, loaded once on first use. */
export function kube(): Promise<KubeModule> {
  kubeModule ??= import('@kubernetes/client-node');
  return kubeModule;
}

/** Thrown when the API server refuses or the pod cannot run; `retryable` is false for refusals that will not pass. */
export class KubernetesSandboxError extends Error {
  override readonly name = 'KubernetesSandboxError';
  constructor(
    message: string,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The HTTP status of a failed API call, when it has one. */
export function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'number' ? code : undefined;
}

/** The API server's message for a failed call (its Status body), else the error's own. */
export function describeApiError(err: unknown): string {
  const body = (err as { body?: unknown })?.body;
  if (typeof body === 'string') {
    try {
      const parsed = JSON.parse(body) as { message?: string };
      if (parsed.message) return parsed.message;
    } catch {
      return body.slice(0, 500);
    }
  }
  if (body && typeof body === 'object' && 'message' in body) return String((body as { message: unknown }).message);
  return err instanceof Error ? err.message : String(err);
}

/** `err` of the call `what` in `namespace` as a {@link KubernetesSandboxError}, retryable unless it is a refusal that will not pass. */
export function apiError(namespace: string, what: string, err: unknown): KubernetesSandboxError {
  if (err instanceof KubernetesSandboxError || (err instanceof Error && err.name === 'AbortError')) return err as KubernetesSandboxError;
  const code = statusOf(err);
  // 4xx other than conflicts, throttling and timeouts are refusals that will not pass by retrying.
  const retryable = code === undefined || code >= 500 || code === 409 || code === 429 || code === 408;
  return new KubernetesSandboxError(`${what} in namespace ${namespace} failed: ${describeApiError(err)}`, retryable, { cause: err });
}

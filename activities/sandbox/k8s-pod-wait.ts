/**
 * Waiting for a sandbox pod to run: a watch over the pod, re-listed when it ends, and the verdict on a
 * pod that will never run (deleted, ended, an image that cannot be pulled).
 */
import type * as k8s from '@kubernetes/client-node';
import { kube, KubernetesSandboxError } from './k8s-api';

/** How long a new sandbox pod may take to reach Running. */
const RUNNING_TIMEOUT_MS = 120_000;

/**
 * Wait until pod `name` runs, watching it; a watch that ends (timeout, 410 Gone) is re-listed and resumed.
 * `readPod` reads it (null when it is gone). Throws a non-retryable error for a pod that can never run.
 */
export async function waitPodRunning(kc: k8s.KubeConfig, namespace: string, name: string, readPod: (name: string) => Promise<k8s.V1Pod | null>): Promise<void> {
  const { Watch } = await kube();
  const deadline = Date.now() + RUNNING_TIMEOUT_MS;
  const watch = new Watch(kc);
  const fieldSelector = `metadata.name=${name}`;
  for (;;) {
    const pod = await readPod(name);
    const verdict = podVerdict(pod);
    if (verdict === 'running') return;
    if (verdict !== 'pending') throw new KubernetesSandboxError(`sandbox pod ${name} ${verdict}`, false);
    const left = deadline - Date.now();
    if (left <= 0) throw new KubernetesSandboxError(`sandbox pod ${name} not Running within ${RUNNING_TIMEOUT_MS / 1000} s`, true);
    const outcome = await new Promise<'running' | 'again' | string>((resolve) => {
      let abort: AbortController | null = null;
      let done = false;
      const settle = (v: string): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        abort?.abort();
        resolve(v);
      };
      const timer = setTimeout(() => settle('again'), Math.min(left, 30_000));
      watch
        .watch(
          `/api/v1/namespaces/${namespace}/pods`,
          { fieldSelector, resourceVersion: pod?.metadata?.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: 30 },
          (phase, obj: k8s.V1Pod) => {
            if (phase === 'DELETED') return settle('deleted');
            if (phase === 'ERROR') return settle('again');
            const v = podVerdict(obj);
            if (v === 'running') settle('running');
            else if (v !== 'pending') settle(v);
          },
          // 410 Gone, a dropped connection or the server's timeout: list again and resume.
          () => settle('again'),
        )
        .then((a) => {
          abort = a;
          if (done) a.abort();
        })
        .catch(() => settle('again'));
    });
    if (outcome === 'running') return;
    if (outcome !== 'again') throw new KubernetesSandboxError(`sandbox pod ${name} ${outcome}`, false);
  }
}

/** Whether a pod runs, may still come up ('pending'), or never will (then why, in words). */
function podVerdict(pod: k8s.V1Pod | null): 'running' | 'pending' | string {
  if (pod === null) return 'was deleted';
  if (pod.metadata?.deletionTimestamp) return 'is being deleted';
  const phase = pod.status?.phase;
  if (phase === 'Running') return 'running';
  if (phase === 'Succeeded' || phase === 'Failed') return `ended (${phase}${pod.status?.reason ? `: ${pod.status.reason}` : ''})`;
  const waiting = pod.status?.containerStatuses?.[0]?.state?.waiting;
  if (waiting && /ImagePullBackOff|ErrImagePull|InvalidImageName|CreateContainerConfigError/.test(waiting.reason ?? '')) {
    return `cannot start (${waiting.reason}: ${waiting.message ?? ''})`;
  }
  return 'pending';
}

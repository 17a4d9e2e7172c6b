/**
 * The `k8s` sandbox driver: one pod per task, run under the `gvisor` RuntimeClass, with an
 * egress NetworkPolicy of its own.
 *
 * The pod is hardened the way a pod running untrusted code should be: no service account
 * token, no service links, non-root with every capability dropped, no privilege escalation,
 * RuntimeDefault seccomp, a read-only root file system with size-limited emptyDirs for
 * `/workspace` and `/tmp`, requests equal to limits, and `activeDeadlineSeconds` from the
 * task's wall-clock budget, so nothing outlives its task even if the worker is gone for good.
 *
 * The worker keeps the authoritative working copy (git, credentials and pushes never enter
 * the pod). It is copied into the pod when the sandbox starts and whenever the worker changes
 * it (a checkpoint restored), and copied back after every command, so checkpoints, diffs and
 * commits on the worker see exactly what the command left. Both copies are tar streams over
 * `pods/exec` (see `pod-copy.ts`); the one coming back is untrusted: only regular files,
 * directories and symlinks pass, within a byte and a file cap, or the step fails and the pod is
 * reset to the worker's copy, which stays as it was.
 *
 * Egress goes through the cluster's egress proxy only, and only for commands granted it: each such
 * command gets credentials of its own (see `k8s-egress.ts`), and its pod's NetworkPolicy admits the
 * proxy and DNS from the first grant that names a host on.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Writable } from 'node:stream';
import type * as k8s from '@kubernetes/client-node';
import type { Logger } from '../../workers/log';
import { activityFailure } from '../failures';
import { OutputTail, SANDBOX_ID, SandboxAbortedError, startTicker } from './common';
import { readInside, writeInside } from './safe-fs';
import type { ExecOptions, ExecResult, ProvisionOptions, SandboxDriver, SandboxHandle } from './driver';
import { apiError, describeApiError as describe, kube, KubernetesSandboxError, statusOf } from './k8s-api';
import { PodEgress } from './k8s-egress';
import { commandScript, killScript, podExec } from './k8s-pod-exec';
import { waitPodRunning } from './k8s-pod-wait';
import { copyBackFromPod, copyIntoPod, type PodExec, type PodExecIo } from './pod-copy';
import { TarRefusedError } from './tar-guard';
import {
  ANNOTATION_TASK_ID,
  CONTAINER,
  DEFAULT_POD_RESOURCES,
  deniesAllEgress,
  K8S_MANAGED_BY,
  LABEL_MANAGED_BY,
  podName,
  proxyEgressRules,
  quantityBytes,
  sandboxNetworkPolicy,
  sandboxPod,
  type EgressProxy,
  type PodResources,
  type PodTemplate,
} from './k8s-objects';

export { KubernetesSandboxError } from './k8s-api';
export { exitCodeOf } from './k8s-pod-exec';

/** Longest a copy of the working copy into the pod or back may take. */
export const DEFAULT_SYNC_TIMEOUT_MS = 10 * 60_000;
const CONTROL_TIMEOUT_MS = 30_000;
/** Most files, directories and symlinks a pod's working copy may bring back. */
export const DEFAULT_COPY_BACK_MAX_FILES = 200_000;

/** Bounds on what one copy-back from the pod may bring. */
export interface CopyBackLimits {
  /** Bytes of the archive, measured on the stream; defaults to the workspace's `sizeLimit`. */
  maxBytes: number;
  /** Files, directories and symlinks; defaults to {@link DEFAULT_COPY_BACK_MAX_FILES}. */
  maxFiles: number;
}

/** Dependencies and settings of the pod driver. */
export interface KubernetesSandboxDriverOptions {
  kubeConfig: k8s.KubeConfig;
  namespace: string;
  /** Image of the sandbox container: the toolchain commands get. */
  image: string;
  runtimeClassName?: string;
  uid?: number;
  resources?: Partial<PodResources>;
  /**
   * The cluster's egress proxy: where it runs (what a networked pod's policy admits), the secret the
   * worker signs command tokens with, and its report port. Without it no pod has any egress.
   */
  egress?: { proxy: EgressProxy; secret: string; reportUrl: string; reportTimeoutMs?: number };
  /** Paths inside the container (defaults `/workspace` and `/tmp`). */
  workspacePath?: string;
  tmpPath?: string;
  /** Caps on each copy-back (see {@link CopyBackLimits}). */
  copyBack?: Partial<CopyBackLimits>;
  /** Deadline of each copy into the pod or back ({@link DEFAULT_SYNC_TIMEOUT_MS}). */
  syncTimeoutMs?: number;
  log: Logger;
}

/** Load the kubeconfig from `KUBECONFIG` or the in-cluster service account; never a silent localhost fallback. */
export async function loadKubeConfig(env: NodeJS.ProcessEnv = process.env): Promise<k8s.KubeConfig> {
  const { KubeConfig } = await kube();
  const kc = new KubeConfig();
  if (env.KUBECONFIG) {
    kc.loadFromFile(env.KUBECONFIG);
  } else if (env.KUBERNETES_SERVICE_HOST) {
    kc.loadFromCluster();
  } else {
    throw new KubernetesSandboxError('SANDBOX_DRIVER=k8s needs KUBECONFIG, or to run inside a cluster (KUBERNETES_SERVICE_HOST)', false);
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server) throw new KubernetesSandboxError('the kubeconfig names no current cluster with a server address', false);
  return kc;
}

/** Runs each task's commands in its own gVisor pod (see the module comment). */
export class KubernetesSandboxDriver implements SandboxDriver {
  readonly name = 'k8s';
  readonly isolation: string;
  private readonly kc: k8s.KubeConfig;
  private readonly namespace: string;
  private readonly image: string;
  private readonly runtimeClassName: string | null;
  private readonly uid: number;
  private readonly resources: PodResources;
  private readonly egress: PodEgress | undefined;
  /** Pods whose policy this process saw admit the proxy (policies are only ever widened to it, so this stays true). */
  private readonly proxyAdmitted = new Set<string>();
  private readonly workspacePath: string;
  private readonly tmpPath: string;
  private readonly copyBack: CopyBackLimits;
  private readonly syncTimeoutMs: number;
  private readonly log: Logger;

  constructor(opts: KubernetesSandboxDriverOptions) {
    this.kc = opts.kubeConfig;
    this.namespace = opts.namespace;
    this.image = opts.image;
    this.runtimeClassName = opts.runtimeClassName === '' ? null : (opts.runtimeClassName ?? 'gvisor');
    this.isolation = this.runtimeClassName === null ? 'container' : `runtimeClass:${this.runtimeClassName}`;
    this.uid = opts.uid ?? 65534;
    this.resources = { ...DEFAULT_POD_RESOURCES, ...opts.resources };
    this.egress = opts.egress && new PodEgress({ ...opts.egress, log: opts.log });
    this.workspacePath = opts.workspacePath ?? '/workspace';
    this.tmpPath = opts.tmpPath ?? '/tmp';
    const workspaceBytes = quantityBytes(this.resources.workspaceSize);
    if (workspaceBytes === null) throw new KubernetesSandboxError(`workspace size ${JSON.stringify(this.resources.workspaceSize)} is not a Kubernetes quantity`, false);
    this.copyBack = { maxBytes: opts.copyBack?.maxBytes ?? workspaceBytes, maxFiles: opts.copyBack?.maxFiles ?? DEFAULT_COPY_BACK_MAX_FILES };
    this.syncTimeoutMs = opts.syncTimeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS;
    this.log = opts.log;
  }

  /** Fail fast when the namespace is missing or the credentials cannot reach it. */
  async check(): Promise<void> {
    const { CoreV1Api } = await kube();
    try {
      await this.kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: this.namespace, limit: 1 });
    } catch (err) {
      throw new KubernetesSandboxError(`cannot list pods in namespace ${this.namespace}: ${describe(err)}`, false, { cause: err });
    }
  }

  /**
   * Create the task's NetworkPolicy and pod, wait for Running through a watch, and copy the working
   * copy in. A pod that already exists for this task is re-attached when it runs, replaced when not.
   */
  async provision(opts: ProvisionOptions): Promise<SandboxHandle> {
    const { CoreV1Api, NetworkingV1Api } = await kube();
    const core = this.kc.makeApiClient(CoreV1Api);
    const net = this.kc.makeApiClient(NetworkingV1Api);
    const name = podName(opts.id);
    const handle: SandboxHandle = { id: opts.id, driver: this.name, isolation: this.isolation, workdir: this.workspacePath, hostWorkdir: path.resolve(opts.hostWorkdir) };

    const existing = await this.readPod(name);
    if (existing?.status?.phase === 'Running' && existing.metadata?.deletionTimestamp === undefined) {
      this.log.info('sandbox re-attached', { sandbox_id: opts.id, driver: this.name, pod: name });
      return handle;
    }
    if (existing) await this.deleteObjects(name);

    const egress = opts.egressAllowlist ?? [];
    const policy = this.networkPolicy(opts.id, egress);
    const pod = this.podSpec(opts.id, egress, opts.activeDeadlineSeconds);
    try {
      await net.createNamespacedNetworkPolicy({ namespace: this.namespace, body: policy });
    } catch (err) {
      if (statusOf(err) !== 409) throw this.apiError('create NetworkPolicy', err);
      await net.replaceNamespacedNetworkPolicy({ name, namespace: this.namespace, body: policy }).catch((e: unknown) => {
        throw this.apiError('replace NetworkPolicy', e);
      });
    }
    let created: k8s.V1Pod;
    try {
      created = await core.createNamespacedPod({ namespace: this.namespace, body: pod });
    } catch (err) {
      throw this.apiError('create pod', err);
    }
    // The policy goes with its pod when the pod is deleted by anyone (garbage collection).
    await net
      .patchNamespacedNetworkPolicy({
        name,
        namespace: this.namespace,
        body: [{ op: 'add', path: '/metadata/ownerReferences', value: [{ apiVersion: 'v1', kind: 'Pod', name, uid: created.metadata!.uid!, blockOwnerDeletion: false }] }],
      })
      .catch((err: unknown) => this.log.warn('could not make the NetworkPolicy owned by its pod', { pod: name, error: describe(err) }));

    if (deniesAllEgress(policy)) this.proxyAdmitted.delete(name);
    else this.proxyAdmitted.add(name);
    await waitPodRunning(this.kc, this.namespace, name, (n) => this.readPod(n));
    await this.upload(handle);
    this.log.info('sandbox provisioned', { sandbox_id: opts.id, driver: this.name, pod: name, isolation: this.isolation });
    return handle;
  }

  /**
   * Run `command` with `sh -c` in the pod's working copy, then copy the working copy back to the worker.
   * With `opts.egress` and a proxy, the command gets the proxy environment with a token of its own for
   * that grant (its pod's policy is widened to the proxy first when the grant names any host), and the
   * result carries what the proxy saw of the task's traffic.
   */
  async exec(handle: SandboxHandle, command: string, opts: ExecOptions): Promise<ExecResult> {
    if (opts.signal?.aborted) throw new SandboxAbortedError(command, { cause: opts.signal.reason });
    const egress = opts.egress && this.egress;
    if (egress && opts.egress!.allow.length > 0) await this.admitProxy(handle.id);
    const tail = new OutputTail(opts.maxOutputBytes);
    const sink = (): Writable =>
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          tail.push(chunk);
          cb();
        },
      });
    const tag = randomBytes(6).toString('hex');
    // The token reaches the command over stdin, never the exec's command line (see k8s-pod-exec.ts).
    const privateEnv = egress ? egress.environment(handle.id, opts.egress!, opts.timeoutMs) : undefined;
    const { script, stdin } = commandScript({ command, workdir: this.workspacePath, tmpPath: this.tmpPath, tag, env: opts.env, privateEnv });
    const started = Date.now();
    let timedOut = false;
    const controller = new AbortController();
    const stopTicker = startTicker(opts.onTick, this.log, handle.id);
    const onAbort = (): void => controller.abort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, opts.timeoutMs);
    let exitCode: number;
    try {
      // The command's own timer ends it; the exec's deadline is only a backstop past it.
      const res = await this.execIn(handle)(['/bin/sh', '-c', script], {
        stdin,
        stdout: sink(),
        stderr: sink(),
        signal: controller.signal,
        timeoutMs: opts.timeoutMs + CONTROL_TIMEOUT_MS,
      });
      exitCode = res.exitCode;
    } catch (err) {
      if (!controller.signal.aborted) throw err;
      exitCode = 124;
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    }
    let report: Promise<ExecResult['egress']> | undefined;
    try {
      if (controller.signal.aborted) await this.killCommands(handle, tag);
      if (opts.signal?.aborted) throw new SandboxAbortedError(command, { cause: opts.signal.reason });
      // Asked while the copy comes back; it never rejects (a failure leaves the result without a report).
      report = egress?.report(handle.id);
      await this.download(handle, opts.signal);
    } catch (err) {
      if (!(err instanceof TarRefusedError)) throw err;
      await this.resetPod(handle);
      const ran = timedOut ? 'timed out' : `exited ${exitCode}`;
      throw activityFailure('SandboxLimit', `the command ${ran}, but what it left was not copied back: ${err.message}`, { cause: err });
    } finally {
      stopTicker();
    }
    const { output, truncatedBytes } = tail.result();
    const result: ExecResult = { exitCode: timedOut ? 124 : exitCode, output, outputTruncatedBytes: truncatedBytes, timedOut, durationMs: Date.now() - started };
    const seen = await report;
    // As in gVisor, a grant lasts as long as its command: what a command left running is refused from now on.
    if (egress) await egress.release(handle.id);
    return seen ? { ...result, egress: seen } : result;
  }

  /**
   * Make the task's policy admit the proxy and DNS if it admits nothing (the task was granted egress after
   * its pod started). Policies apply to running pods, so the pod keeps running, processes and all.
   */
  private async admitProxy(id: string): Promise<void> {
    const name = podName(id);
    if (this.proxyAdmitted.has(name)) return;
    const { NetworkingV1Api } = await kube();
    const net = this.kc.makeApiClient(NetworkingV1Api);
    let policy: k8s.V1NetworkPolicy;
    try {
      policy = await net.readNamespacedNetworkPolicy({ name, namespace: this.namespace });
    } catch (err) {
      throw this.apiError('read NetworkPolicy', err);
    }
    if (deniesAllEgress(policy)) {
      // `add` replaces the list when the server kept an empty one and adds it when it dropped it; the rest stays (owner included).
      await net
        .patchNamespacedNetworkPolicy({ name, namespace: this.namespace, body: [{ op: 'add', path: '/spec/egress', value: proxyEgressRules(this.egress!.proxy) }] })
        .catch((err: unknown) => {
          throw this.apiError('patch NetworkPolicy', err);
        });
      this.log.info('sandbox policy widened to the egress proxy: the task was granted egress', { sandbox_id: id, pod: name });
    }
    this.proxyAdmitted.add(name);
  }

  /** Read a file of the worker's copy, which mirrors the pod after every command. */
  async readFile(handle: SandboxHandle, file: string): Promise<string> {
    return (await readInside(handle.hostWorkdir, file)).data.toString('utf8');
  }

  /** Write a file on the worker and into the pod. */
  async writeFile(handle: SandboxHandle, file: string, content: string): Promise<string> {
    const written = await writeInside(handle.hostWorkdir, file, content);
    await this.upload(handle, [written]);
    return written;
  }

  /** The worker changed its copy (a checkpoint restored): make the pod's copy the same. */
  async syncWorkdir(handle: SandboxHandle): Promise<void> {
    await this.upload(handle, undefined, true);
  }

  /** Kill every command this driver started in the pod (the pod itself keeps running). */
  async killAll(handle: SandboxHandle): Promise<void> {
    if ((await this.readPod(podName(handle.id)))?.status?.phase !== 'Running') return;
    await this.killCommands(handle, null);
  }

  /** Delete the pod and its NetworkPolicy; succeeds when they are already gone. */
  async teardown(handle: SandboxHandle): Promise<void> {
    await this.deleteObjects(podName(handle.id));
    this.proxyAdmitted.delete(podName(handle.id));
    await this.egress?.release(handle.id);
    this.log.info('sandbox removed', { sandbox_id: handle.id, driver: this.name });
  }

  /** Task ids of every sandbox pod in the namespace. */
  async list(): Promise<string[]> {
    const { CoreV1Api } = await kube();
    const core = this.kc.makeApiClient(CoreV1Api);
    const ids = new Set<string>();
    let _continue: string | undefined;
    do {
      const page = await core.listNamespacedPod({ namespace: this.namespace, labelSelector: `${LABEL_MANAGED_BY}=${K8S_MANAGED_BY}`, limit: 500, _continue });
      for (const p of page.items) {
        const id = p.metadata?.annotations?.[ANNOTATION_TASK_ID];
        if (id && SANDBOX_ID.test(id)) ids.add(id);
      }
      _continue = page.metadata?._continue || undefined;
    } while (_continue);
    return [...ids].sort();
  }

  /** The pod this driver makes for a task (for tests and for `k8s/` documentation). */
  podSpec(id: string, egressAllowlist: readonly string[], activeDeadlineSeconds?: number): k8s.V1Pod {
    return sandboxPod(this.template(), id, egressAllowlist, activeDeadlineSeconds);
  }

  /** The task's NetworkPolicy (see {@link sandboxNetworkPolicy}). */
  networkPolicy(id: string, egressAllowlist: readonly string[]): k8s.V1NetworkPolicy {
    return sandboxNetworkPolicy(this.template(), id, egressAllowlist);
  }

  private template(): PodTemplate {
    return { namespace: this.namespace, image: this.image, runtimeClassName: this.runtimeClassName, uid: this.uid, resources: this.resources, egressProxy: this.egress?.proxy, workspacePath: this.workspacePath, tmpPath: this.tmpPath };
  }

  private async readPod(name: string): Promise<k8s.V1Pod | null> {
    const { CoreV1Api } = await kube();
    try {
      return await this.kc.makeApiClient(CoreV1Api).readNamespacedPod({ name, namespace: this.namespace });
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw this.apiError('read pod', err);
    }
  }

  private async deleteObjects(name: string): Promise<void> {
    const { CoreV1Api, NetworkingV1Api } = await kube();
    const core = this.kc.makeApiClient(CoreV1Api);
    const net = this.kc.makeApiClient(NetworkingV1Api);
    for (const del of [
      () => core.deleteNamespacedPod({ name, namespace: this.namespace, gracePeriodSeconds: 0, propagationPolicy: 'Foreground' }),
      () => net.deleteNamespacedNetworkPolicy({ name, namespace: this.namespace, propagationPolicy: 'Foreground' }),
    ]) {
      try {
        await del();
      } catch (err) {
        if (statusOf(err) !== 404) throw this.apiError('delete', err);
      }
    }
    // Wait for the pod to be gone, so a pod of the same name can be created right after.
    const deadline = Date.now() + CONTROL_TIMEOUT_MS;
    while ((await this.readPod(name)) !== null) {
      if (Date.now() > deadline) throw new KubernetesSandboxError(`pod ${name} was not deleted within ${CONTROL_TIMEOUT_MS / 1000} s`, true);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Kill the session of one command (`tag`), or of every command this driver started (null). */
  private async killCommands(handle: SandboxHandle, tag: string | null): Promise<void> {
    try {
      await this.execIn(handle)(['/bin/sh', '-c', killScript(this.tmpPath, tag)], { timeoutMs: CONTROL_TIMEOUT_MS });
    } catch (err) {
      this.log.warn('could not kill commands in sandbox pod', { sandbox_id: handle.id, error: describe(err) });
    }
  }

  /** Copy the worker's working copy (or some of its files) into the pod; `replace` empties the pod's copy first. */
  private async upload(handle: SandboxHandle, files?: string[], replace = false): Promise<void> {
    await copyIntoPod(this.execIn(handle), { hostDir: handle.hostWorkdir, podDir: this.workspacePath, files, replace, timeoutMs: this.syncTimeoutMs });
  }

  /** Replace the worker's working copy with the pod's; a refused archive leaves the worker's copy as it was. */
  private async download(handle: SandboxHandle, signal?: AbortSignal): Promise<void> {
    await copyBackFromPod(this.execIn(handle), {
      hostDir: handle.hostWorkdir,
      podDir: this.workspacePath,
      limits: { maxBytes: this.copyBack.maxBytes, maxMembers: this.copyBack.maxFiles },
      timeoutMs: this.syncTimeoutMs,
      signal,
    });
  }

  /** After a refused copy-back, make the pod's copy the worker's again, so a retry starts from what the worker kept. */
  private async resetPod(handle: SandboxHandle): Promise<void> {
    try {
      await this.upload(handle, undefined, true);
    } catch (err) {
      this.log.warn('could not reset the sandbox pod to the worker\'s working copy', { sandbox_id: handle.id, error: describe(err) });
    }
  }

  private execIn(handle: SandboxHandle): PodExec {
    const target = { kc: this.kc, namespace: this.namespace, pod: podName(handle.id), container: CONTAINER };
    return (command, io: PodExecIo) => podExec(target, command, { ...io, timeoutMs: io.timeoutMs ?? this.syncTimeoutMs });
  }

  private apiError(what: string, err: unknown): KubernetesSandboxError {
    return apiError(this.namespace, what, err);
  }
}

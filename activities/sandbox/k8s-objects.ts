/**
 * The Kubernetes objects of one sandbox, as pure data: its pod (gVisor RuntimeClass, hardened to the
 * `restricted` Pod Security level, size-limited emptyDirs) and its NetworkPolicy, with the names,
 * labels and annotations the driver finds them by.
 */
import { createHash } from 'node:crypto';
import type * as k8s from '@kubernetes/client-node';
import { InvalidSandboxIdError, SANDBOX_ID } from './common';

export const K8S_MANAGED_BY = 'agent-inbox';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const LABEL_COMPONENT = 'app.kubernetes.io/component';
/** Label carrying a DNS-safe key of the task id (label values are short; the full id is an annotation). */
export const LABEL_SANDBOX = 'agent-inbox.dev/sandbox';
export const ANNOTATION_TASK_ID = 'agent-inbox.dev/task-id';
export const ANNOTATION_EGRESS = 'agent-inbox.dev/egress-allowlist';
export const CONTAINER = 'sandbox';

/** Requests (equal to limits) of every sandbox pod. */
export interface PodResources {
  cpu: string;
  memory: string;
  ephemeralStorage: string;
  workspaceSize: string;
  tmpSize: string;
}

export const DEFAULT_POD_RESOURCES: PodResources = {
  cpu: '1',
  memory: '2Gi',
  ephemeralStorage: '4Gi',
  workspaceSize: '2Gi',
  tmpSize: '1Gi',
};

/** Where an egress proxy runs: sandboxes may reach it (and DNS) once their task may reach any domain. */
export interface EgressProxy {
  /** Proxy URL commands get (with credentials of their own, per command) as HTTP(S)_PROXY. */
  url: string;
  /** Namespace the proxy's pods run in. */
  namespace: string;
  /** Labels selecting the proxy's pods. */
  podLabels: Record<string, string>;
  port: number;
}

/** What every sandbox pod of a driver is made from. */
export interface PodTemplate {
  namespace: string;
  image: string;
  runtimeClassName: string | null;
  uid: number;
  resources: PodResources;
  egressProxy: EgressProxy | undefined;
  workspacePath: string;
  tmpPath: string;
}

/** The pod made for a task: gVisor, `restricted` Pod Security, no token, size-limited emptyDirs. */
export function sandboxPod(t: PodTemplate, id: string, egressAllowlist: readonly string[], activeDeadlineSeconds?: number): k8s.V1Pod {
  const name = podName(id);
  const r = t.resources;
  const amounts = { cpu: r.cpu, memory: r.memory, 'ephemeral-storage': r.ephemeralStorage };
  // No proxy variables here: a proxy URL without a command's token only fails; each command gets its own.
  const env: k8s.V1EnvVar[] = [
    { name: 'HOME', value: t.tmpPath },
    { name: 'TMPDIR', value: t.tmpPath },
    { name: 'CI', value: '1' },
    { name: 'LANG', value: 'C.UTF-8' },
  ];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: t.namespace,
      labels: sandboxLabels(id),
      annotations: { [ANNOTATION_TASK_ID]: id, ...(egressAllowlist.length > 0 ? { [ANNOTATION_EGRESS]: egressAllowlist.join(',') } : {}) },
    },
    spec: {
      ...(t.runtimeClassName === null ? {} : { runtimeClassName: t.runtimeClassName }),
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      restartPolicy: 'Never',
      ...(activeDeadlineSeconds === undefined ? {} : { activeDeadlineSeconds: Math.max(1, Math.ceil(activeDeadlineSeconds)) }),
      terminationGracePeriodSeconds: 5,
      hostNetwork: false,
      hostPID: false,
      hostIPC: false,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: t.uid,
        runAsGroup: t.uid,
        fsGroup: t.uid,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      containers: [
        {
          name: CONTAINER,
          image: t.image,
          imagePullPolicy: 'IfNotPresent',
          // Idles until commands are exec'd; reaps nothing itself, `sh`'s `wait` keeps it cheap.
          command: ['/bin/sh', '-c', 'trap "exit 0" TERM; while :; do sleep 3600 & wait $!; done'],
          workingDir: t.workspacePath,
          env,
          resources: { requests: amounts, limits: amounts },
          securityContext: {
            runAsNonRoot: true,
            runAsUser: t.uid,
            runAsGroup: t.uid,
            allowPrivilegeEscalation: false,
            privileged: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
            seccompProfile: { type: 'RuntimeDefault' },
          },
          volumeMounts: [
            { name: 'workspace', mountPath: t.workspacePath },
            { name: 'tmp', mountPath: t.tmpPath },
          ],
        },
      ],
      volumes: [
        { name: 'workspace', emptyDir: { sizeLimit: r.workspaceSize } },
        { name: 'tmp', emptyDir: { sizeLimit: r.tmpSize } },
      ],
    },
  };
}

/**
 * The task's NetworkPolicy: no ingress, and no egress at all unless the task allows some domains
 * and an egress proxy is configured; then only {@link proxyEgressRules} (the proxy enforces the
 * domains, from the token each command presents).
 */
export function sandboxNetworkPolicy(t: PodTemplate, id: string, egressAllowlist: readonly string[]): k8s.V1NetworkPolicy {
  const name = podName(id);
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, namespace: t.namespace, labels: sandboxLabels(id), annotations: { [ANNOTATION_TASK_ID]: id } },
    spec: {
      podSelector: { matchLabels: { [LABEL_SANDBOX]: sandboxKey(id) } },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [],
      egress: t.egressProxy && egressAllowlist.length > 0 ? proxyEgressRules(t.egressProxy) : [],
    },
  };
}

/** DNS port (UDP and TCP) of the cluster's resolver. */
const DNS_PORT = 53;

/**
 * The egress a sandbox that may reach some domain gets: the cluster's DNS, and the proxy's pods on its
 * port; nothing else. A task granted egress later gets these added to its policy while its pod runs.
 */
export function proxyEgressRules(proxy: EgressProxy): k8s.V1NetworkPolicyEgressRule[] {
  return [
    {
      to: [{ namespaceSelector: {}, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } }],
      ports: [
        { protocol: 'UDP', port: DNS_PORT },
        { protocol: 'TCP', port: DNS_PORT },
      ],
    },
    {
      to: [
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': proxy.namespace } },
          podSelector: { matchLabels: proxy.podLabels },
        },
      ],
      ports: [{ protocol: 'TCP', port: proxy.port }],
    },
  ];
}

/** Whether a sandbox's policy admits no egress at all (ours either admit nothing or exactly {@link proxyEgressRules}). */
export function deniesAllEgress(policy: k8s.V1NetworkPolicy): boolean {
  return (policy.spec?.egress ?? []).length === 0;
}

/** The labels of a task's pod and policy: ours, a sandbox, and which task's. */
export function sandboxLabels(id: string): Record<string, string> {
  return { [LABEL_MANAGED_BY]: K8S_MANAGED_BY, [LABEL_COMPONENT]: 'sandbox', [LABEL_SANDBOX]: sandboxKey(id) };
}

/** The pod (and NetworkPolicy) name of a task: DNS-safe, unique per task id. */
export function podName(id: string): string {
  return `sbx-${sandboxKey(id)}`;
}

/** A DNS-label-safe key for a task id: a readable prefix plus a hash, so distinct ids never collide. */
export function sandboxKey(id: string): string {
  if (!SANDBOX_ID.test(id)) throw new InvalidSandboxIdError(id);
  const readable = id.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 36);
  const hash = createHash('sha256').update(id).digest('hex').slice(0, 10);
  return readable ? `${readable}-${hash}` : hash;
}

/** Bytes of a Kubernetes quantity (`2Gi`, `500M`, `1e9`, `1048576`); null when it is not one. */
export function quantityBytes(q: string): number | null {
  const m = /^([0-9]+(?:\.[0-9]+)?)(?:([eE][0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E))?$/.exec(q.trim());
  if (!m) return null;
  const factors: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };
  const value = Number(m[2] ? `${m[1]}${m[2]}` : m[1]) * (m[3] ? factors[m[3]]! : 1);
  return Number.isSafeInteger(Math.ceil(value)) ? Math.ceil(value) : null;
}

/**
 * Chooses the sandbox driver from the configuration: `gvisor` where `runsc` can run,
 * `k8s` when asked for, and `process` (no isolation, said loudly) otherwise.
 */
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { EgressProxyPort } from '../activities/egress/types';
import type { SandboxDriver } from '../activities/sandbox/driver';
import { probeQuotaDisks } from '../activities/sandbox/quota-disk';
import { GvisorSandboxDriver } from '../activities/sandbox/gvisor';
import { KubernetesSandboxDriver, loadKubeConfig } from '../activities/sandbox/k8s';
import { ProcessSandboxDriver } from '../activities/sandbox/process';
import { readEgressProxySecret, type Config } from './config';
import type { Logger } from './log';

/** What the backend reports about its sandboxes in the log, `/healthz` and traces. */
export interface SandboxInfo {
  driver: string;
  isolation: string;
  /** runsc version or Kubernetes server and namespace. */
  detail?: string;
  /** Set whenever commands are not isolated, with the reason. */
  warning?: string;
}

/** Thrown when the configured driver cannot work on this host; says what to install or set. */
export class SandboxUnavailableError extends Error {
  override readonly name = 'SandboxUnavailableError';
}

/** The cache the setup script builds runsc into (`scripts/install-runsc.sh`). */
export function runscCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.AGENT_INBOX_CACHE ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'agent-inbox');
  return path.join(base, 'runsc');
}

/**
 * The runsc binary to use: `RUNSC` when set, else the newest one the setup script built, else
 * `runsc` on PATH (Debian's package). Null when there is none.
 */
export async function resolveRunsc(env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  if (env.RUNSC) {
    if (!existsSync(env.RUNSC)) throw new SandboxUnavailableError(`RUNSC=${env.RUNSC} does not exist`);
    return path.resolve(env.RUNSC);
  }
  const cache = runscCacheDir(env);
  const versions = (await fs.readdir(cache).catch(() => [] as string[])).sort().reverse();
  for (const v of versions) {
    const bin = path.join(cache, v, 'runsc');
    if (existsSync(bin)) return bin;
  }
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, 'runsc'))) return path.join(dir, 'runsc');
  }
  return null;
}

/**
 * Build the configured driver; `auto` picks gVisor where runsc exists and this process is root. `egress`
 * is the worker's egress proxy, which gVisor sandboxes of tasks with an allowlist reach (and nothing else).
 */
export async function createSandboxDriver(
  cfg: Config,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
  egress?: EgressProxyPort,
): Promise<{ driver: SandboxDriver; info: SandboxInfo }> {
  const root = path.join(cfg.DATA_DIR, 'sandboxes');
  const processDriver = (warning: string): { driver: SandboxDriver; info: SandboxInfo } => {
    const driver = new ProcessSandboxDriver({ root, log });
    return { driver, info: { driver: driver.name, isolation: driver.isolation, warning } };
  };

  if (cfg.SANDBOX_DRIVER === 'process') {
    return processDriver('isolation: none — SANDBOX_DRIVER=process runs commands as plain processes on the worker host');
  }
  if (cfg.SANDBOX_DRIVER === 'k8s') {
    const kubeConfig = await loadKubeConfig(env);
    const driver = new KubernetesSandboxDriver({
      kubeConfig,
      namespace: cfg.K8S_NAMESPACE,
      image: cfg.K8S_SANDBOX_IMAGE,
      runtimeClassName: cfg.K8S_RUNTIME_CLASS,
      // loadConfig checked that a proxy comes with its secret file and report URL.
      ...(cfg.K8S_EGRESS_PROXY && cfg.EGRESS_PROXY_SECRET_FILE && cfg.K8S_EGRESS_PROXY_REPORT_URL
        ? { egress: { proxy: cfg.K8S_EGRESS_PROXY, secret: readEgressProxySecret(cfg.EGRESS_PROXY_SECRET_FILE), reportUrl: cfg.K8S_EGRESS_PROXY_REPORT_URL } }
        : {}),
      uid: cfg.SANDBOX_UID,
      resources: { workspaceSize: cfg.K8S_WORKSPACE_SIZE },
      copyBack: { maxFiles: cfg.K8S_COPY_BACK_MAX_FILES },
      log,
    });
    await driver.check();
    return { driver, info: { driver: driver.name, isolation: driver.isolation, detail: `${kubeConfig.getCurrentCluster()?.server ?? '?'} namespace ${cfg.K8S_NAMESPACE}` } };
  }

  const runsc = await resolveRunsc(env);
  const isRoot = process.getuid?.() === 0;
  if (runsc === null || !isRoot) {
    const why = runsc === null ? 'runsc was not found (run `npm run setup`, or `apt-get install runsc`)' : 'runsc needs root and this process is not root';
    if (cfg.SANDBOX_DRIVER === 'gvisor') throw new SandboxUnavailableError(`SANDBOX_DRIVER=gvisor, but ${why}`);
    return processDriver(`isolation: none — ${why}; commands run as plain processes on the worker host`);
  }
  const driver = new GvisorSandboxDriver({
    root,
    runsc,
    log,
    uid: cfg.SANDBOX_UID,
    gid: cfg.SANDBOX_GID,
    rootfs: cfg.SANDBOX_ROOTFS,
    runscFlags: cfg.RUNSC_FLAGS,
    ...(egress ? { egress } : {}),
    limits: {
      memoryMb: cfg.SANDBOX_MEMORY_MB,
      processesPerCommand: cfg.SANDBOX_MAX_PROCESSES,
      tmpMb: cfg.SANDBOX_TMP_MB,
      diskMb: cfg.SANDBOX_DISK_MB,
      diskInodes: cfg.SANDBOX_DISK_FILES,
      fileSizeMb: cfg.SANDBOX_FILE_MB,
    },
  });
  let version: string;
  try {
    version = await driver.version();
  } catch (err) {
    const why = `runsc at ${runsc} does not run: ${String(err)}`;
    if (cfg.SANDBOX_DRIVER === 'gvisor') throw new SandboxUnavailableError(why);
    return processDriver(`isolation: none — ${why}`);
  }
  // A working copy's own disk needs loop devices; without them every task would fail at provisioning.
  if (cfg.SANDBOX_DISK_MB > 0) {
    try {
      await probeQuotaDisks(root);
    } catch (err) {
      throw new SandboxUnavailableError(`working-copy disks (SANDBOX_DISK_MB=${cfg.SANDBOX_DISK_MB}) cannot be made here: ${String(err)}; set SANDBOX_DISK_MB=0 to keep working copies on the worker's disk, unbounded`);
    }
  }
  return { driver, info: { driver: driver.name, isolation: driver.isolation, detail: `${runsc} (${version})` } };
}

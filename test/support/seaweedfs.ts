/**
 * A real S3-compatible server for the S3 artifact store's tests: SeaweedFS's `weed mini` (master, volume, filer and
 * S3 gateway in one process) on loopback with free ports, a fresh data directory, and one S3 identity with a random
 * access key, so every request is signed and checked. Built once by `bash k8s/tools/build-seaweedfs.sh` into a cache
 * outside the repository (`npm run setup:test` does it); about 4 s to start here, and a second more for the first write.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CreateBucketCommand, ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import type { S3StoreSettings } from '../../activities/artifacts/s3';
import { tempDir } from './git-fixture';
import { freePorts } from './http';
import { sleep, startProcess, stopProcess, tail, type Proc } from './kube-processes';
import { REPO_ROOT } from './stack';

/** How long the S3 gateway may take to answer a signed request after the process starts. */
const START_TIMEOUT_MS = 60_000;
/** How often readiness is polled. */
const POLL_MS = 100;
/** Lines of the server's log quoted when it fails to start. */
const LOG_TAIL_LINES = 40;
/** The smallest volumes `weed mini` takes: the tests write kilobytes to megabytes. */
const VOLUME_SIZE_MB = 64;

/** A running server; `stop()` ends it and removes its data, and is safe to call twice. */
export interface SeaweedS3 {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Creates a bucket with the test identity. */
  createBucket(name: string): Promise<void>;
  /** Store settings for `bucket` under `prefix`, signed with the test identity. */
  settings(bucket: string, prefix?: string): S3StoreSettings;
  /**
   * Environment for a backend using `bucket`: ARTIFACT_STORE=s3 and the S3_* variables, with the keys written to
   * files (mode 0600) in `secretsDir`, which must be outside the backend's DATA_DIR.
   */
  env(bucket: string, secretsDir: string, prefix?: string): Record<string, string>;
  /** The server's log file, for post-mortems. */
  logFile: string;
  stop(): Promise<void>;
}

/** The directory holding `weed`: `SEAWEEDFS_BIN_DIR`, else what `build-seaweedfs.sh --bin-dir` names (it builds nothing). */
export async function weedBinDir(): Promise<string | undefined> {
  const has = (dir: string): boolean => fs.existsSync(path.join(dir, 'weed'));
  const override = process.env.SEAWEEDFS_BIN_DIR;
  if (override) return has(override) ? override : undefined;
  const out = await new Promise<string | undefined>((resolve) => {
    execFile('bash', [path.join(REPO_ROOT, 'k8s', 'tools', 'build-seaweedfs.sh'), '--bin-dir'], { timeout: 30_000 }, (err, stdout) => resolve(err ? undefined : stdout));
  });
  const dir = out?.trim().split('\n').pop();
  return dir && has(dir) ? dir : undefined;
}

/** Starts `weed mini` and resolves once its S3 gateway answers a signed request. */
export async function startSeaweedS3(): Promise<SeaweedS3> {
  const bin = await weedBinDir();
  if (bin === undefined) throw new Error('SeaweedFS (weed) is not built: run `bash k8s/tools/build-seaweedfs.sh` (or `npm run setup:test`) first');
  const dir = tempDir('seaweedfs');
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  const accessKeyId = `AKTEST${randomBytes(7).toString('hex').toUpperCase()}`;
  const secretAccessKey = randomBytes(20).toString('base64url');
  const config = path.join(dir, 's3.json');
  fs.writeFileSync(
    config,
    JSON.stringify({ identities: [{ name: 'agent-inbox-test', credentials: [{ accessKey: accessKeyId, secretKey: secretAccessKey }], actions: ['Admin', 'Read', 'Write', 'List', 'Tagging'] }] }),
    { mode: 0o600 },
  );
  const [master, masterGrpc, volume, volumeGrpc, filer, filerGrpc, s3, s3Grpc, admin, adminGrpc] = await freePorts(10);
  // weed puts a Unix socket per gRPC port under /tmp whatever it is told: removed on stop.
  const sockets = [`master-grpc-${masterGrpc}`, `volume-grpc-${volumeGrpc}`, `filer-grpc-${filerGrpc}`, `s3-grpc-${s3Grpc}`, `admin-grpc-${adminGrpc}`].map((n) => `/tmp/seaweedfs-${n}.sock`);
  // `weed mini`, not `weed server`: its single embedded volume server lets the first write allocate a volume at
  // once, where `weed server` holds allocation for a heartbeat pulse (5 s) after start.
  const args = [
    '-logtostderr=true',
    'mini',
    '-ip=127.0.0.1',
    '-ip.bind=127.0.0.1',
    `-dir=${data}`,
    `-master.port=${master}`,
    `-master.port.grpc=${masterGrpc}`,
    '-master.telemetry=false',
    `-master.volumeSizeLimitMB=${VOLUME_SIZE_MB}`,
    `-volume.port=${volume}`,
    `-volume.port.grpc=${volumeGrpc}`,
    '-volume.preStopSeconds=0',
    `-filer.port=${filer}`,
    `-filer.port.grpc=${filerGrpc}`,
    `-filer.localSocket=${path.join(dir, 'filer.sock')}`,
    `-s3.port=${s3}`,
    `-s3.port.grpc=${s3Grpc}`,
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
    `-s3.localSocket=${path.join(dir, 's3.sock')}`,
    `-s3.config=${config}`,
    '-s3.autoCreateBucket=false',
    '-webdav=false',
    '-admin.ui=false',
    `-admin.port=${admin}`,
    `-admin.port.grpc=${adminGrpc}`,
    '-admin.port.legacy=0',
  ];
  const proc = startProcess('weed', path.join(bin, 'weed'), args, dir);
  const endpoint = `http://127.0.0.1:${s3}`;
  const region = 'us-east-1';
  const client = new S3Client({ region, endpoint, forcePathStyle: true, credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1 });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    client.destroy();
    await stopProcess(proc);
    for (const s of sockets) fs.rmSync(s, { force: true });
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await ready(client, proc);
  } catch (err) {
    await stop();
    throw err;
  }
  const settings = (bucket: string, prefix = ''): S3StoreSettings => ({ bucket, prefix, region, endpoint, forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } });
  return {
    endpoint,
    region,
    accessKeyId,
    secretAccessKey,
    logFile: proc.logFile,
    async createBucket(name) {
      await client.send(new CreateBucketCommand({ Bucket: name }));
    },
    settings,
    env(bucket, secretsDir, prefix = '') {
      fs.mkdirSync(secretsDir, { recursive: true });
      const idFile = path.join(secretsDir, 's3-access-key-id');
      const secretFile = path.join(secretsDir, 's3-secret-access-key');
      fs.writeFileSync(idFile, `${accessKeyId}\n`, { mode: 0o600 });
      fs.writeFileSync(secretFile, `${secretAccessKey}\n`, { mode: 0o600 });
      return {
        ARTIFACT_STORE: 's3',
        S3_ENDPOINT: endpoint,
        S3_REGION: region,
        S3_BUCKET: bucket,
        S3_PREFIX: prefix,
        S3_ACCESS_KEY_ID_FILE: idFile,
        S3_SECRET_ACCESS_KEY_FILE: secretFile,
      };
    },
    stop,
  };
}

/** Waits until a signed ListBuckets succeeds; fails with the log's tail if the process exits or the time runs out. */
async function ready(client: S3Client, proc: Proc): Promise<void> {
  let exited = false;
  void proc.exited.then(() => {
    exited = true;
  });
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last: unknown;
  while (Date.now() < deadline) {
    if (exited) throw new Error(`SeaweedFS exited before its S3 gateway was ready; last log lines:\n${tail(proc.logFile, LOG_TAIL_LINES)}`);
    try {
      await client.send(new ListBucketsCommand({}));
      return;
    } catch (err) {
      last = err;
    }
    await sleep(POLL_MS);
  }
  throw new Error(`SeaweedFS's S3 gateway did not answer within ${START_TIMEOUT_MS / 1000} s (last error: ${String(last)}); last log lines:\n${tail(proc.logFile, LOG_TAIL_LINES)}`);
}

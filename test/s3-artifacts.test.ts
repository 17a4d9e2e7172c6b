/**
 * The shared artifact store: the S3 store's contract against a real SeaweedFS (signed requests, a real bucket),
 * its configuration, and a task run by one worker whose artifacts and archived trace another API process, with an
 * empty DATA_DIR of its own, serves from the same bucket.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { ArtifactStoreUnavailableError, S3ArtifactStore } from '../activities/artifacts/s3';
import { ArtifactNotFoundError, InvalidArtifactNameError } from '../activities/artifacts/store';
import { removeExpiredTasks } from '../activities/records/expiry';
import { TaskRecordStore, writeTaskRecord } from '../activities/records/task-record';
import type { TaskView } from '../domain/task';
import { ConfigError, loadConfig } from '../workers/config';
import { createLogger } from '../workers/log';
import type { Stack } from '../workers/stack';
import { traceQuery } from '../workflows/messages';
import type { DevServer } from '../workers/temporal-server';
import { git, makeOriginRepo, tempDir } from './support/git-fixture';
import { call, eventually } from './support/http';
import { startSeaweedS3, type SeaweedS3 } from './support/seaweedfs';
import { startTestStack, startTestTemporal } from './support/stack';

const quiet = createLogger({ level: 'error', component: 'test' });

/** One bucket for the file: SeaweedFS allocates volumes for each new bucket, which takes seconds. Each test has a prefix of its own. */
const BUCKET = 'artifacts';

let s3: SeaweedS3;
before(async () => {
  s3 = await startSeaweedS3();
  await s3.createBucket(BUCKET);
});
after(async () => {
  await s3?.stop();
});

/** Every key under `prefix` in the bucket, as the server has them. */
async function keysIn(prefix = ''): Promise<string[]> {
  const client = new S3Client({ ...s3.settings(BUCKET), maxAttempts: 1 });
  try {
    const res = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
    return (res.Contents ?? []).map((o) => o.Key!).sort();
  } finally {
    client.destroy();
  }
}

/** A key prefix of its own for one test. */
function freshPrefix(): string {
  return `p-${randomBytes(6).toString('hex')}/`;
}

describe('the S3 artifact store', () => {
  it('keeps binary artifacts whole, replaces them in one put, and lists a task by name', async () => {
    const prefix = freshPrefix();
    const store = new S3ArtifactStore(s3.settings(BUCKET, prefix));
    await store.check();
    const bundle = randomBytes(3 * 2 ** 20 + 17);
    assert.deepEqual(await store.put('t-1', 'checkpoint.bundle', bundle), { ref: 'artifact://t-1/checkpoint.bundle', bytes: bundle.length });
    assert.ok((await store.readByName('t-1', 'checkpoint.bundle')).equals(bundle), 'the same bytes back');
    await store.put('t-1', 'b.log', 'first');
    await store.put('t-1', 'b.log', 'second');
    assert.equal((await store.read('artifact://t-1/b.log')).toString(), 'second');
    assert.deepEqual(await store.list('t-1'), [
      { name: 'b.log', ref: 'artifact://t-1/b.log', bytes: 6 },
      { name: 'checkpoint.bundle', ref: 'artifact://t-1/checkpoint.bundle', bytes: bundle.length },
    ]);
    assert.deepEqual(await store.list('t-2'), []);
    assert.deepEqual(await keysIn(prefix), [`${prefix}t-1/b.log`, `${prefix}t-1/checkpoint.bundle`], 'one object each, under the prefix');
    await assert.rejects(store.readByName('t-1', 'missing.log'), ArtifactNotFoundError);
    await assert.rejects(store.read('artifact://t-2/b.log'), ArtifactNotFoundError);
    assert.deepEqual(await store.readFrom('t-1', 'missing.log', 0), { data: Buffer.alloc(0), size: 0 });
    store.close();
  });

  it('appends piece by piece, reads from an offset, and cuts a torn last line before the next append', async () => {
    const prefix = freshPrefix();
    const store = new S3ArtifactStore(s3.settings(BUCKET, prefix));
    const PIECES = 40;
    let expected = '';
    for (let i = 0; i < PIECES; i++) {
      const text = `{"n":${i}}\n`;
      expected += text;
      assert.equal((await store.append('t-log', 'trace.jsonl', text)).bytes, Buffer.byteLength(expected));
    }
    assert.equal(await store.completeLines('t-log', 'trace.jsonl'), PIECES);
    assert.equal((await store.readByName('t-log', 'trace.jsonl')).toString(), expected, 'pieces read back in append order');
    const offset = Buffer.byteLength(expected.split('\n').slice(0, 25).join('\n')) + 1;
    const tailPart = await store.readFrom('t-log', 'trace.jsonl', offset);
    assert.deepEqual({ text: tailPart.data.toString(), size: tailPart.size }, { text: expected.slice(offset), size: Buffer.byteLength(expected) });
    // Inside a piece, not at its start.
    assert.equal((await store.readFrom('t-log', 'trace.jsonl', offset + 3)).data.toString(), expected.slice(offset + 3));
    assert.equal((await store.readFrom('t-log', 'trace.jsonl', Buffer.byteLength(expected))).data.length, 0);
    assert.deepEqual(await store.list('t-log'), [{ name: 'trace.jsonl', ref: 'artifact://t-log/trace.jsonl', bytes: Buffer.byteLength(expected) }]);

    // A writer that died mid-line: the count ignores the torn line and cuts it, so the next append starts clean.
    await store.append('t-log', 'trace.jsonl', '{"n":40}\n{"torn');
    assert.equal(await store.completeLines('t-log', 'trace.jsonl'), PIECES + 1);
    await store.append('t-log', 'trace.jsonl', '{"n":41}\n');
    const lines = (await store.readByName('t-log', 'trace.jsonl')).toString().trim().split('\n');
    assert.equal(lines.length, PIECES + 2);
    assert.deepEqual(lines.slice(-2), ['{"n":40}', '{"n":41}']);

    // A put over an appended artifact replaces all of it.
    await store.put('t-log', 'trace.jsonl', 'whole\n');
    assert.equal((await store.readByName('t-log', 'trace.jsonl')).toString(), 'whole\n');
    assert.deepEqual(await keysIn(prefix), [`${prefix}t-log/trace.jsonl`]);
    store.close();
  });

  it('refuses names that would reach another task, another artifact or outside its prefix, and ignores keys it did not write', async () => {
    const tenant = freshPrefix();
    const store = new S3ArtifactStore(s3.settings(BUCKET, `${tenant}tenant-a/`));
    const other = new S3ArtifactStore(s3.settings(BUCKET, `${tenant}tenant-b/`));
    await other.put('t-victim', 'secret.log', 'not yours');
    const before = await keysIn();
    for (const [taskId, name] of [
      ['t-1', '../x'],
      ['t-1', '../../tenant-b/t-victim/secret.log'],
      ['t-1', 'a/b'],
      ['t-1', '.hidden'],
      ['t-1', 'trace.jsonl~'],
      ['t-1', 'trace.jsonl~/0000000000'],
      ['t-1', ''],
      ['..', 'x'],
      ['t-1/../t-victim', 'secret.log'],
      ['', 'x'],
    ] as const) {
      await assert.rejects(store.put(taskId, name, 'x'), InvalidArtifactNameError, `put ${taskId} ${name}`);
      await assert.rejects(store.append(taskId, name, 'x\n'), InvalidArtifactNameError, `append ${taskId} ${name}`);
      await assert.rejects(store.readByName(taskId, name), InvalidArtifactNameError, `read ${taskId} ${name}`);
      await assert.rejects(store.readFrom(taskId, name, 0), InvalidArtifactNameError, `readFrom ${taskId} ${name}`);
    }
    await assert.rejects(store.list('../tenant-b/t-victim'), InvalidArtifactNameError);
    await assert.rejects(store.removeTask('..'), InvalidArtifactNameError);
    await assert.rejects(store.read('artifact://t-victim/../secret.log'), InvalidArtifactNameError);
    for (const bad of ['../', 'a/../b/', '/a/', 'a//b/', 'a']) assert.throws(() => new S3ArtifactStore(s3.settings(BUCKET, bad)), /invalid S3 key prefix/, bad);
    assert.deepEqual(await store.taskIds(), [], "the other prefix's tasks are not this store's");
    assert.deepEqual(await keysIn(), before, 'nothing was written anywhere in the bucket');

    // Keys someone else put beside the store's: never listed, never read as part of an artifact.
    const raw = new S3Client({ ...s3.settings(BUCKET), maxAttempts: 1 });
    await store.put('t-1', 'a.log', 'mine');
    for (const key of ['t-1/.hidden', 't-1/a.log~/junk', 't-1/a.log~/12', 't-1/x/y', '.tmp/z']) {
      await raw.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${tenant}tenant-a/${key}`, Body: 'planted' }));
    }
    raw.destroy();
    assert.deepEqual(await store.list('t-1'), [{ name: 'a.log', ref: 'artifact://t-1/a.log', bytes: 4 }]);
    assert.equal((await store.readByName('t-1', 'a.log')).toString(), 'mine');
    assert.deepEqual(await store.taskIds(), ['t-1']);
    store.close();
    other.close();
  });

  it('removes the artifacts of a task past its retention, pieces and record included, and keeps the others', async () => {
    const prefix = freshPrefix();
    const store = new S3ArtifactStore(s3.settings(BUCKET, prefix));
    const view = (id: string, ended: string) => ({ task_id: id, state: 'done', updated_at: ended }) as unknown as TaskView;
    await store.put('t-old', 'step-1-0.log', 'old output');
    await store.append('t-old', 'trace.jsonl', '{"type":"created"}\n');
    await store.append('t-old', 'trace.jsonl', '{"type":"step"}\n');
    await writeTaskRecord(store, { task_id: 't-old', view: view('t-old', '2026-02-20T00:00:00.000Z'), first_index: 2, entries: [{ at: '', type: 'done', message: '' }] }, quiet);
    await writeTaskRecord(store, { task_id: 't-recent', view: view('t-recent', '2026-02-28T00:00:00.000Z'), first_index: 0, entries: [] }, quiet);
    await store.put('t-open', 'step-1-0.log', 'no record yet');
    const records = new TaskRecordStore(store, quiet);
    assert.equal((await records.trace('t-old'))?.length, 3, 'the record holds the archived head and the live entries');

    const removed = await removeExpiredTasks({ records, retentionDays: 7, now: new Date('2026-03-01T00:00:00.000Z'), log: quiet });
    assert.deepEqual(
      removed.map((r) => ({ id: r.task_id, files: r.files })),
      [{ id: 't-old', files: 4 }],
    );
    assert.ok(removed[0]!.bytes > 0);
    assert.deepEqual(await store.list('t-old'), []);
    assert.equal(await records.read('t-old'), null);
    assert.ok((await records.read('t-recent')) !== null);
    assert.equal((await store.readByName('t-open', 'step-1-0.log')).toString(), 'no record yet');
    assert.deepEqual(await keysIn(`${prefix}t-old/`), [], 'no key of the removed task is left');
    assert.equal(await store.removeTask('t-old'), null, 'a second removal finds nothing');
    store.close();
  });

  it('fails its start-up check naming the bucket and endpoint, never the secret', async () => {
    const wrongSecret = new S3ArtifactStore({ ...s3.settings(BUCKET), credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: `${s3.secretAccessKey}x` } });
    const missing = new S3ArtifactStore(s3.settings('no-such-bucket'));
    for (const store of [wrongSecret, missing]) {
      await assert.rejects(store.check(), (err: unknown) => {
        assert.ok(err instanceof ArtifactStoreUnavailableError, String(err));
        assert.match(err.message, new RegExp(s3.endpoint.replace(/[.]/g, '\\.')));
        assert.ok(err.message.includes(store === missing ? 'no-such-bucket' : BUCKET), err.message);
        assert.ok(!err.message.includes(s3.secretAccessKey) && !err.message.includes(s3.accessKeyId), err.message);
        assert.equal(err.cause, undefined, 'the SDK error, with its request details, is not kept');
        return true;
      });
      store.close();
    }
  });
});

describe('ARTIFACT_STORE configuration', () => {
  const root = tempDir('s3-config');
  const dataDir = path.join(root, 'data');

  it('is the disk store unless told otherwise', () => {
    assert.deepEqual(loadConfig({ DATA_DIR: dataDir }).artifactStore, { kind: 'disk', dir: path.join(dataDir, 'artifacts') });
  });

  it('reads the keys from private files and refuses what would leak or misplace them, naming the variable', () => {
    const env = s3.env('some-bucket', path.join(root, 'secrets'), 'agent-inbox');
    const cfg = loadConfig({ DATA_DIR: dataDir, ...env }).artifactStore;
    assert.deepEqual(cfg, { kind: 's3', s3: { ...s3.settings('some-bucket', 'agent-inbox/') } });

    const inData = path.join(dataDir, 'key');
    fs.mkdirSync(dataDir, { recursive: true });
    fs.writeFileSync(inData, 'k', { mode: 0o600 });
    const open = path.join(root, 'open-key');
    fs.writeFileSync(open, 'k', { mode: 0o644 });
    fs.chmodSync(open, 0o644);
    for (const [variable, extra] of [
      ['S3_BUCKET', { S3_BUCKET: undefined }],
      ['S3_BUCKET', { S3_BUCKET: 'a/b' }],
      ['S3_ENDPOINT', { S3_ENDPOINT: `http://${s3.accessKeyId}:${s3.secretAccessKey}@127.0.0.1:1` }],
      ['S3_ENDPOINT', { S3_ENDPOINT: 'http://127.0.0.1:1/other-bucket' }],
      ['S3_PREFIX', { S3_PREFIX: '../escape' }],
      ['S3_PREFIX', { S3_PREFIX: '/abs' }],
      ['S3_SECRET_ACCESS_KEY_FILE', { S3_SECRET_ACCESS_KEY_FILE: undefined }],
      ['S3_SECRET_ACCESS_KEY_FILE', { S3_SECRET_ACCESS_KEY_FILE: inData }],
      ['S3_ACCESS_KEY_ID_FILE', { S3_ACCESS_KEY_ID_FILE: open }],
      ['ARTIFACT_STORE', { ARTIFACT_STORE: 'nfs' }],
    ] as const) {
      const merged: Record<string, string | undefined> = { DATA_DIR: dataDir, ...env, ...extra };
      assert.throws(
        () => loadConfig(merged as NodeJS.ProcessEnv),
        (e: unknown) => e instanceof ConfigError && e.message.includes(`${variable}:`) && !e.message.includes(s3.secretAccessKey),
        `${variable} ${JSON.stringify(extra)}`,
      );
    }
  });
});

describe('an API process that never ran the task', () => {
  let temporal: DevServer;
  let worker: Stack;
  let reader: Stack;

  before(async () => {
    temporal = await startTestTemporal();
  });
  after(async () => {
    await reader?.stop();
    await worker?.stop();
    await temporal?.stop();
  });

  it('serves the artifacts and archived trace entries a worker on another machine wrote', async () => {
    const root = tempDir('shared-store');
    const origin = makeOriginRepo(root, { 'README.md': 'fixture\n' });
    const prefix = `${freshPrefix()}agent-inbox/`;
    const queue = `shared-store-${process.pid}`;
    const env = s3.env(BUCKET, path.join(root, 'secrets'), prefix);
    worker = await startTestStack(temporal, path.join(root, 'worker-data'), queue, { SANDBOX_DRIVER: 'process', ...env });
    const readerData = path.join(root, 'reader-data');
    reader = await startTestStack(temporal, readerData, queue, { ROLES: 'api', ...env });

    const STEPS = 3;
    const steps = Array.from({ length: STEPS }, (_, i) => ({ run: `echo line-${i} >> out.txt && echo step-${i}` }));
    const res = await call(worker.url!, 'POST', '/v1/tasks', { repo: origin, goal: 'Write three lines', planner: { kind: 'recipe', steps }, budget: { max_steps: 1 } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const id = res.body.task_id;
    const ask = await eventually(
      () => call(worker.url!, 'GET', `/v1/tasks/${id}`),
      (r) => r.body.items?.some((i: any) => i.kind === 'budget_request' && i.status === 'pending'),
      'budget request',
      60_000,
    );
    const grant = ask.body.items.find((i: any) => i.kind === 'budget_request' && i.status === 'pending');
    // Messages are traced: enough of them push the trace past what the workflow keeps, so the oldest go to the archive.
    const MESSAGES = 210;
    const MESSAGE_BATCH = 10;
    for (let i = 0; i < MESSAGES; i += MESSAGE_BATCH) {
      const batch = Array.from({ length: Math.min(MESSAGE_BATCH, MESSAGES - i) }, (_, j) => call(worker.url!, 'POST', `/v1/tasks/${id}/messages`, { text: `note ${i + j}` }));
      for (const r of await Promise.all(batch)) assert.equal(r.status, 200);
    }
    assert.equal((await call(worker.url!, 'POST', `/v1/tasks/${id}/inbox/${grant.item_id}`, { action: 'grant_budget', budget: { max_steps: 5 } })).status, 200);
    const review = await eventually(() => call(worker.url!, 'GET', `/v1/tasks/${id}`), (r) => r.body.state === 'pr_open', 'the review', 90_000);
    assert.equal(git(origin, 'show', `agent/${id}:out.txt`), 'line-0\nline-1\nline-2');

    // The reader asks Temporal for the live entries and the bucket for the archived head.
    const live = await worker.client.workflow.getHandle(id).query(traceQuery);
    assert.ok(live.first_index > 0, 'older entries were archived');
    const trace = await call(reader.url!, 'GET', `/v1/tasks/${id}/trace`);
    assert.equal(trace.status, 200);
    assert.equal(trace.body.first_index, 0, 'the whole trace, archived head included');
    assert.equal(trace.body.entries.length, review.body.trace_count);
    assert.equal(trace.body.entries[0].type, 'created');
    assert.deepEqual(
      trace.body.entries.filter((e: any) => e.type === 'message').map((e: any) => e.message).sort(),
      Array.from({ length: MESSAGES }, (_, i) => `note ${i}`).sort(),
      'every message once, the archived ones included',
    );

    const log = await call(reader.url!, 'GET', `/v1/tasks/${id}/artifacts/step-1-0.log`);
    assert.equal(log.status, 200, JSON.stringify(log.body));
    assert.match(String(log.body), /step-0/);
    const archive = await call(reader.url!, 'GET', `/v1/tasks/${id}/artifacts/trace.jsonl`);
    assert.equal(archive.status, 200);
    assert.equal(String(archive.body).trim().split('\n')[0], JSON.stringify(trace.body.entries[0]));
    const item = review.body.items.find((i: any) => i.kind === 'pr_review' && i.status === 'pending');
    const diff = await call(reader.url!, 'GET', `/v1/tasks/${id}/inbox/${item.item_id}/diff`);
    assert.equal(diff.body.source, 'artifact', 'the full diff, from the bucket');
    assert.ok(JSON.stringify(diff.body).includes('line-2'));
    assert.equal((await call(reader.url!, 'GET', `/v1/tasks/${id}/artifacts/no-such.log`)).status, 404);

    assert.ok(!fs.existsSync(path.join(readerData, 'artifacts')), "the reader's own disk holds no artifact");
    const keys = await keysIn(prefix);
    assert.ok(keys.length > 0 && keys.every((k) => k.startsWith(`${prefix}${id}/`)), keys.join(', '));
    const store = new S3ArtifactStore(s3.settings(BUCKET, prefix));
    for (const a of await store.list(id)) {
      const text = (await store.readByName(id, a.name)).toString('latin1');
      assert.ok(!text.includes(s3.secretAccessKey) && !text.includes(s3.accessKeyId), `no credential in ${a.name}`);
    }
    store.close();
  });
});

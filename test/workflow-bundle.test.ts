/**
 * What the workflow bundle loads into each workflow. A worker keeps hundreds of workflows cached in one V8 context
 * whose module cache is per workflow, so every module a workflow evaluates costs each cached workflow its own copy:
 * the bundle keeps heavy libraries out, and evaluates the shell parser once for all workflows (preloaded).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { it } from 'node:test';
import { PREBUILT_BUNDLE_PATH } from '../workers/worker';

const code = (): string => fs.readFileSync(PREBUILT_BUNDLE_PATH, 'utf8');

/** The packages a workflow may load: the SDK's and the shell parser (preloaded). Anything else is a new cost per workflow. */
const PACKAGES = ['@temporalio/common', '@temporalio/workflow', 'long', 'ms', 'mvdan-sh', 'nexus-rpc'];

it('holds no package beyond the SDK and the shell parser (no schema library: the workflow reads plain rules, the API validates with zod)', () => {
  const names = new Set([...code().matchAll(/"\.\/node_modules\/((?:@[^/"]+\/)?[^/"]+)\//g)].map((m) => m[1]!));
  assert.deepEqual([...names].sort(), PACKAGES, 'a workflow import reaches a package not listed here');
});

it('preloads the shell parser, so its package is evaluated once per worker and not once per workflow', () => {
  const preload = /exports\.preloadModules = function preloadModules\(\) \{([^}]*)\}/.exec(code());
  assert.ok(preload, 'the bundle has a preload entry');
  assert.match(preload[1]!, /domain\/shell-preload\.js/);
});

/**
 * Pure policy and lifecycle rules.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ACTIONS_BY_KIND, commandNeedingApproval, globToRegExp, isTerminal, mergeBudget, mergePolicy, preview, protectedPathsTouched } from '../domain/rules';
import { Budget, Policy, RepoPolicy, TaskSpec } from '../domain/task';

describe('policy rules', () => {
  const task = Policy.parse({ protected_paths: ['infra/'], approval_commands: ['^npm publish'], egress_allowlist: ['registry.example', 'api.example'] });

  it('merges a repo policy without ever loosening the task policy', () => {
    const repo = RepoPolicy.parse({ protected_paths: ['secrets/**'], require_plan_approval: true, egress_allowlist: ['api.example', 'other.example'] });
    const merged = mergePolicy(task, repo);
    assert.deepEqual(merged.protected_paths, ['infra/', 'secrets/**']);
    assert.deepEqual(merged.approval_commands, ['^npm publish']);
    assert.equal(merged.require_plan_approval, true);
    assert.deepEqual(merged.egress_allowlist, ['api.example'], 'an allowlist only shrinks');
    assert.equal(mergePolicy(Policy.parse({ require_plan_approval: true }), RepoPolicy.parse({ require_plan_approval: false })).require_plan_approval, true);
    assert.deepEqual(mergePolicy(task, null), task);
  });

  it('applies repo budget ceilings as minimums', () => {
    const b = mergeBudget(Budget.parse({ max_steps: 10, max_usd: 1 }), RepoPolicy.parse({ budget: { max_steps: 3, max_usd: 9 } }));
    assert.equal(b.max_steps, 3);
    assert.equal(b.max_usd, 1);
  });

  it('names the approval pattern a command matches', () => {
    assert.equal(commandNeedingApproval(task, 'npm publish --tag next'), '^npm publish');
    assert.equal(commandNeedingApproval(task, 'echo npm publish'), null);
  });

  it('matches protected paths gitignore-style', () => {
    const cases: [string, string, boolean][] = [
      ['secrets/**', 'secrets/a/b.env', true],
      ['secrets/**', 'src/secrets/a', false],
      ['*.pem', 'deep/dir/key.pem', true],
      ['infra/', 'infra/main.tf', true],
      ['infra/', 'infrastructure.md', false],
      ['/README.md', 'README.md', true],
      ['/README.md', 'docs/README.md', false],
      ['src/*.ts', 'src/a.ts', true],
      ['src/*.ts', 'src/sub/a.ts', false],
      ['src/**/*.ts', 'src/a.ts', true],
      ['src/**/*.ts', 'src/x/y/a.ts', true],
      ['a+b(1).txt', 'a+b(1).txt', true],
      ['.github', '.github/workflows/ci.yml', true],
    ];
    for (const [glob, file, expected] of cases) assert.equal(globToRegExp(glob).test(file), expected, `${glob} vs ${file}`);
    assert.deepEqual(protectedPathsTouched(task, ['infra/x', 'src/y']), ['infra/x']);
  });
});

describe('lifecycle rules', () => {
  it('knows terminal states and the actions each item kind takes', () => {
    assert.ok(isTerminal('done') && isTerminal('timed_out') && !isTerminal('pr_open'));
    assert.deepEqual([...ACTIONS_BY_KIND.budget_request], ['grant_budget', 'cancel']);
  });

  it('fills task defaults and refuses unknown fields', () => {
    const spec = TaskSpec.parse({ repo: '/r', goal: 'g', planner: { kind: 'recipe', steps: [{ run: 'true' }] } });
    assert.equal(spec.base_branch, 'main');
    assert.equal(spec.budget.max_steps, 50);
    assert.equal(spec.planner.kind === 'recipe' && spec.planner.steps[0]!.timeout_seconds, 600);
    assert.equal(TaskSpec.safeParse({ ...spec, extra: 1 }).success, false);
    assert.equal(TaskSpec.safeParse({ ...spec, repo: '--upload-pack=evil' }).success, false);
  });

  it('marks what a preview cut', () => {
    assert.equal(preview('short', 10), 'short');
    const p = preview('a'.repeat(100), 20);
    assert.match(p, /\[80 characters elided\]/);
  });
});

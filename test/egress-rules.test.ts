/**
 * The allowlist rules every layer applies: what an entry may be, how presets expand, and that a
 * task, a repository or a grant can only narrow the operator's ceiling.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { egressEntryError, expandEgress, grantableHosts, hostAllowed, intersectEgress, setupAllowlist } from '../domain/egress';
import { mergePolicy } from '../domain/rules';
import { Policy, RepoPolicy, TaskSpec } from '../domain/task';

describe('egress allowlist rules', () => {
  it('accepts domains, leading wildcards and presets, and says what is wrong with anything else', () => {
    for (const ok of ['example.com', '*.example.com', 'registry.test', 'npm', 'xn--bcher-kva.example']) assert.equal(egressEntryError(ok), null, ok);
    assert.match(egressEntryError('10.0.0.1')!, /not an address/);
    assert.match(egressEntryError('[::1]')!, /not an address/);
    assert.match(egressEntryError('Example.com')!, /lower case/);
    assert.match(egressEntryError('a.*.example.com')!, /only as a leading/);
    assert.match(egressEntryError('*.com')!, /at least two labels/);
    assert.match(egressEntryError('exa mple.com')!, /not a domain/);
    assert.match(egressEntryError('-x.example.com')!, /not a domain/);
    assert.ok(!TaskSpec.safeParse({ repo: '/tmp/r', goal: 'g', planner: { kind: 'recipe', steps: [{ run: 'true' }] }, policy: { egress_allowlist: ['169.254.169.254'] } }).success);
  });

  it('admits subdomains with a wildcard but not the apex, and compares names without case or trailing dot', () => {
    const allow = expandEgress(['*.example.com', 'api.test']);
    assert.ok(hostAllowed('a.example.com', allow));
    assert.ok(hostAllowed('a.b.example.com', allow));
    assert.ok(!hostAllowed('example.com', allow));
    assert.ok(!hostAllowed('badexample.com', allow), 'a suffix match is on a label boundary');
    assert.ok(hostAllowed('API.test.', allow));
    assert.ok(!hostAllowed('api.test.evil.com', allow));
  });

  it('narrows: a task, a repository and a grant never reach beyond the ceiling', () => {
    assert.deepEqual(intersectEgress(['npm'], ['registry.npmjs.org', 'evil.test']), ['registry.npmjs.org']);
    assert.deepEqual(intersectEgress(['*.example.com'], ['a.example.com', '*.b.example.com', 'example.com']), ['a.example.com', '*.b.example.com']);
    assert.deepEqual(intersectEgress(['a.example.com'], ['*.example.com']), ['a.example.com'], 'a wider task entry is cut to the ceiling');
    assert.deepEqual(intersectEgress([], ['anything.test']), []);
    // The repository narrows the task's list the same way, presets and wildcards included.
    const merged = mergePolicy(Policy.parse({ egress_allowlist: ['*.example.com', 'pypi'] }), RepoPolicy.parse({ egress_allowlist: ['api.example.com', 'pypi.org'] }));
    assert.deepEqual(merged.egress_allowlist, ['api.example.com', 'pypi.org']);
  });

  it('gives setup the registry presets of the ceiling by default, narrowed by the task and the repository', () => {
    const ceiling = ['npm', 'github', 'internal.test'];
    assert.deepEqual(setupAllowlist(ceiling, undefined, undefined), expandEgress(['npm']), 'github is a code host, not a registry preset');
    assert.deepEqual(setupAllowlist(ceiling, ['internal.test', 'other.test'], undefined), ['internal.test']);
    assert.deepEqual(setupAllowlist(ceiling, undefined, ['registry.npmjs.org']), ['registry.npmjs.org']);
    assert.deepEqual(setupAllowlist([], undefined, undefined), []);
  });

  it('offers a human only hosts inside the ceiling that are not already allowed', () => {
    assert.deepEqual(grantableHosts(['*.example.test'], ['a.example.test'], ['a.example.test', 'b.example.test', 'B.example.test.', 'evil.com', '10.0.0.1']), ['b.example.test']);
  });
});

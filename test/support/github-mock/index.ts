/**
 * GitHub for tests: the project's real Octokit client talks to a stateful fake through Prism, which checks every
 * REST request and response against GitHub's official OpenAPI description.
 *
 *   Octokit ──► front router ──► Prism (proxy, --errors) ──► fake GitHub (state in FakeGithub)
 *                    └──── POST /graphql ─────────────────────────┘
 *
 * A request the description refuses (a missing required field, an operation the project was not meant to call)
 * ends in Prism's own 4xx and a response that breaks the description in Prism's 500; both, and every Error in
 * Prism's `sl-violations` header, show up in `violations()`. Octokit's default `accept:
 * application/vnd.github.v3+json` is fine: Prism's proxy mode forwards without content negotiation (only its mock
 * mode answers 406), so clients need no special headers.
 */
import { FakeGithub } from './fake';
import { startPrism } from './prism';
import { startFrontRouter, type Violation } from './router';
import { startFakeServer } from './server';
import { loadTrimmedSpec } from './spec';

export { ACTOR_LOGIN, APP_BOT_LOGIN, FakeGithub, INSTALLATION_ID, type Permission } from './fake';
export type { Violation } from './router';

/** A running GitHub mock. */
export interface GithubMock {
  /** GitHub's API base URL for Octokit (`baseUrl`), GraphQL included. */
  apiUrl: string;
  state: FakeGithub;
  /** Every error Prism reported, one line each (`METHOD /path: location message`); empty when all calls matched the description. */
  violations(): string[];
  /** Everything Prism reported, warnings (an undocumented error status, for one) included. */
  findings(): Violation[];
  /** How long Prism took to start. */
  prismStartupMs: number;
  stop(): Promise<void>;
}

/** Starts the fake, Prism in front of it and the router in front of both. */
export async function startGithubMock(): Promise<GithubMock> {
  const { file, spec } = loadTrimmedSpec();
  const state = new FakeGithub();
  const fake = await startFakeServer(state, spec);
  const prism = await startPrism(file, fake.url).catch(async (error: unknown) => { await fake.close(); throw error; });
  const router = await startFrontRouter(prism.url, fake.url);
  return {
    apiUrl: router.url,
    state,
    violations: () => router.findings.filter((f) => f.severity === 'Error').map((f) => `${f.call}: ${f.message}`),
    findings: () => [...router.findings],
    prismStartupMs: prism.startupMs,
    stop: async () => {
      await router.close();
      await prism.stop();
      await fake.close();
    },
  };
}

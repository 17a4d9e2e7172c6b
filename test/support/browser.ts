/**
 * A real browser for the web inbox tests and benchmark: Debian's chromium driven by playwright-core,
 * headless, one browser per test file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { REPO_ROOT } from './stack';

/** Where chromium is: `CHROMIUM_PATH`, else Debian's /usr/bin/chromium. */
export function chromiumPath(): string {
  return process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
}

/** Launches headless chromium; throws naming what to install when it is missing. */
export async function launchBrowser(): Promise<Browser> {
  const exe = chromiumPath();
  if (!fs.existsSync(exe)) throw new Error(`no chromium at ${exe}: run \`npm run setup:test\` (apt-get install -y chromium) or set CHROMIUM_PATH`);
  // --no-sandbox: test runs are often root in a container, where chromium's own sandbox cannot start.
  return chromium.launch({ executablePath: exe, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

/** The directory screenshots go to (gitignored). */
export function testOutputDir(): string {
  const dir = path.join(REPO_ROOT, 'test-output');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * Signs the page in: with a stack that has sign-in (`stack.auth.loginLink()`, a one-time link for the local
 * admin) it visits that link; a stack without it has an open API, and then there is nothing to do.
 */
export async function signIn(page: Page, stack: unknown): Promise<void> {
  const auth = (stack as { auth?: { loginLink(): string | Promise<string> } }).auth;
  if (!auth) return;
  await page.goto(await auth.loginLink());
}

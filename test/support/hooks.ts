/**
 * Hooks a hostile or careless repository carries: each writes a marker file when git runs it.
 */
import fs from 'node:fs';
import path from 'node:path';

/** Every hook a push or fetch can run in the repository it reaches. */
export const SERVER_HOOKS = ['pre-receive', 'update', 'post-receive', 'post-update', 'reference-transaction', 'proc-receive', 'push-to-checkout', 'pre-auto-gc'];

/** Installs executable `hooks` into `hooksDir`, each touching `<markerDir>/<hook>-<tag>` when run. */
export function plantHooks(hooksDir: string, markerDir: string, tag: string, hooks: readonly string[] = SERVER_HOOKS): void {
  fs.mkdirSync(hooksDir, { recursive: true });
  for (const hook of hooks) {
    fs.writeFileSync(path.join(hooksDir, hook), `#!/bin/sh\ntouch '${path.join(markerDir, `${hook}-${tag}`)}'\ncat >/dev/null\nexit 0\n`, { mode: 0o755 });
  }
}

/** Names of the markers hooks have written so far. */
export function markers(markerDir: string): string[] {
  return fs.existsSync(markerDir) ? fs.readdirSync(markerDir).sort() : [];
}

/**
 * The loopback origins of the egress benchmark in a process of their own, so the proxy under test
 * does not share an event loop with them: prints `{"http": port, "https": port}` and serves until killed.
 *
 *   node dist/bench/egress-origin.js <key.pem> <cert.pem>
 */
import fs from 'node:fs';
import { startOrigin, startTlsOrigin } from '../test/support/egress-servers';

async function main(): Promise<void> {
  const [keyPath, certPath] = process.argv.slice(2);
  if (!keyPath || !certPath) throw new Error('usage: egress-origin <key.pem> <cert.pem>');
  const web = await startOrigin();
  const secure = await startTlsOrigin({ key: fs.readFileSync(keyPath, 'utf8'), cert: fs.readFileSync(certPath, 'utf8') });
  process.stdout.write(`${JSON.stringify({ http: web.port, https: secure.port })}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

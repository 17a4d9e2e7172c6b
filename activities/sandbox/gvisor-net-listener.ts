/**
 * Run as a program inside a sandbox's proxy-side network namespace (`ip netns exec <ns> node <this>
 * <address> <port>`, with an IPC channel): listens on the proxy's address there and hands the listening
 * socket to its parent, then exits. The parent, in the host's namespace, then accepts the sandbox's
 * connections on a socket bound where only that sandbox can reach it. Nothing runs on import.
 */
import net from 'node:net';

/** What the listener reports to its parent; the listening socket comes with `{ listening: true }`. */
export type ListenerMessage = { listening: true } | { error: string };

function main(): void {
  const [address, port] = process.argv.slice(2);
  const send = process.send?.bind(process);
  if (!send || !address || !port) {
    process.stderr.write('usage: run with an IPC channel: <address> <port>\n');
    process.exit(2);
  }
  const server = net.createServer();
  server.once('error', (err) => {
    send({ error: String(err) } satisfies ListenerMessage, undefined, undefined, () => process.exit(1));
  });
  server.listen({ host: address, port: Number(port), exclusive: true }, () => {
    // Exit only once the socket is on its way: the parent holds its own copy of it from then on.
    send({ listening: true } satisfies ListenerMessage, server, undefined, () => process.exit(0));
  });
}

if (require.main === module) main();

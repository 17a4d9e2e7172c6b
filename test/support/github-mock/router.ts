/**
 * The front door the project is given as GitHub's API base URL: GraphQL goes straight to the fake (the REST
 * description does not cover it), everything else through Prism, whose verdicts are collected here.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One finding Prism reported on a call. */
export interface Violation {
  severity: 'Error' | 'Warning' | 'Information' | 'Hint';
  call: string;
  message: string;
}

/** A running front router. */
export interface FrontRouter {
  url: string;
  findings: Violation[];
  close(): Promise<void>;
}

const PRISM_ERROR_TYPE = 'https://stoplight.io/prism/errors';
const GRAPHQL_PATH = '/graphql';

/** Prism's shape for one validation finding, in `sl-violations` and in its problem+json `validation`. */
interface PrismFinding {
  location?: string[];
  severity?: string;
  message?: string;
}

/** Starts the router forwarding to `prism` and, for GraphQL, to `fake`. */
export async function startFrontRouter(prism: string, fake: string): Promise<FrontRouter> {
  const findings: Violation[] = [];
  const server = http.createServer((req, res) => {
    const target = new URL(req.method === 'POST' && req.url === GRAPHQL_PATH ? fake : prism);
    const call = `${req.method} ${req.url}`;
    const upstream = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } }, (answer) => {
      const violations = answer.headers['sl-violations'];
      const reported = typeof violations === 'string';
      if (reported) findings.push(...parseViolations(call, violations));
      const isProblem = String(answer.headers['content-type'] ?? '').startsWith('application/problem+json');
      if (!isProblem) {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      answer.on('data', (chunk: Buffer) => chunks.push(chunk));
      answer.on('end', () => {
        const raw = Buffer.concat(chunks);
        // A VIOLATIONS answer repeats the header's findings in its body; they are kept once.
        findings.push(...problemFindings(call, answer.statusCode ?? 0, raw.toString('utf8'), !reported));
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        res.end(raw);
      });
    });
    upstream.on('error', (error) => {
      findings.push({ severity: 'Error', call, message: `could not reach ${target.origin}: ${error.message}` });
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: 'bad gateway' }));
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    findings,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/** Findings of an `sl-violations` header: a JSON array, prefixed "Too many violations!" when Prism cut it short. */
function parseViolations(call: string, header: string): Violation[] {
  const truncated = header.startsWith('Too many violations!');
  try {
    return (JSON.parse(header) as PrismFinding[]).map((f) => finding(call, f));
  } catch {
    return [{ severity: 'Error', call, message: truncated ? header : `unreadable sl-violations header: ${header}` }];
  }
}

/** Findings of a Prism error answer (problem+json whose type is one of Prism's); other problem bodies are not Prism's. */
function problemFindings(call: string, status: number, raw: string, withDetails: boolean): Violation[] {
  let problem: { type?: string; title?: string; detail?: string; validation?: PrismFinding[] };
  try {
    problem = JSON.parse(raw);
  } catch {
    return [];
  }
  if (typeof problem.type !== 'string' || !problem.type.startsWith(PRISM_ERROR_TYPE)) return [];
  const head: Violation = { severity: 'Error', call, message: `prism answered ${status} ${problem.type.slice(PRISM_ERROR_TYPE.length)}: ${problem.title ?? ''}: ${problem.detail ?? ''}` };
  return [head, ...(withDetails ? problem.validation ?? [] : []).map((f) => finding(call, f))];
}

function finding(call: string, f: PrismFinding): Violation {
  const severity = f.severity === 'Warning' || f.severity === 'Information' || f.severity === 'Hint' ? f.severity : 'Error';
  return { severity, call, message: `${(f.location ?? []).join('.')} ${f.message ?? ''}`.trim() };
}

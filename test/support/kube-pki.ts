/** Certificates of a test cluster, made with the openssl CLI (ECDSA P-256 keys, which are instant to make). */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

function run(file: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve();
    });
  });
}

export interface CertSpec {
  name: string;
  cn: string;
  org?: string;
  san?: string[];
  usage: 'serverAuth' | 'clientAuth' | 'serverAuth, clientAuth';
}

export async function makeCert(pki: string, spec: CertSpec): Promise<{ cert: string; key: string }> {
  const cnf = path.join(pki, `${spec.name}.cnf`);
  const cert = path.join(pki, `${spec.name}.crt`);
  const key = path.join(pki, `${spec.name}.key`);
  fs.writeFileSync(
    cnf,
    [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      '[dn]',
      ...(spec.org ? [`O = ${spec.org}`] : []),
      `CN = ${spec.cn}`,
      '[ext]',
      'basicConstraints = critical, CA:FALSE',
      'keyUsage = critical, digitalSignature, keyEncipherment',
      `extendedKeyUsage = ${spec.usage}`,
      ...(spec.san ? [`subjectAltName = ${spec.san.join(', ')}`] : []),
      '',
    ].join('\n'),
  );
  await run('openssl', [
    'req', '-x509', '-new', '-config', cnf, '-extensions', 'ext',
    '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key,
    '-CA', path.join(pki, 'ca.crt'), '-CAkey', path.join(pki, 'ca.key'),
    '-days', '3650', '-out', cert,
  ]);
  return { cert, key };
}

/** The CA, server and client certificates and the service-account key of a cluster whose node is `nodeName` and services `serviceCidr`. */
export async function makePki(pki: string, nodeName: string, serviceCidr: string) {
  fs.mkdirSync(pki, { recursive: true });
  const caCnf = path.join(pki, 'ca.cnf');
  fs.writeFileSync(
    caCnf,
    [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      '[dn]',
      'CN = agent-inbox-test-ca',
      '[ext]',
      'basicConstraints = critical, CA:TRUE',
      'keyUsage = critical, keyCertSign, cRLSign, digitalSignature',
      'subjectKeyIdentifier = hash',
      '',
    ].join('\n'),
  );
  await run('openssl', [
    'req', '-x509', '-new', '-config', caCnf, '-extensions', 'ext',
    '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', path.join(pki, 'ca.key'), '-days', '3650', '-out', path.join(pki, 'ca.crt'),
  ]);
  const firstServiceIp = serviceCidr.replace(/\.0\/\d+$/, '.1');
  const [apiserver, admin, kubeletClient, kwok] = await Promise.all([
    makeCert(pki, {
      name: 'apiserver',
      cn: 'kube-apiserver',
      usage: 'serverAuth',
      san: ['IP:127.0.0.1', `IP:${firstServiceIp}`, 'DNS:localhost', 'DNS:kubernetes', 'DNS:kubernetes.default', 'DNS:kubernetes.default.svc', 'DNS:kubernetes.default.svc.cluster.local'],
    }),
    makeCert(pki, { name: 'admin', cn: 'kube-admin', org: 'system:masters', usage: 'clientAuth' }),
    makeCert(pki, { name: 'apiserver-kubelet-client', cn: 'kube-apiserver-kubelet-client', org: 'system:masters', usage: 'clientAuth' }),
    makeCert(pki, { name: 'kwok', cn: nodeName, usage: 'serverAuth', san: ['IP:127.0.0.1', `DNS:${nodeName}`, 'DNS:localhost'] }),
  ]);
  // Service-account token signing key pair (ES256).
  const sa = { key: path.join(pki, 'sa.key'), pub: path.join(pki, 'sa.pub') };
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  fs.writeFileSync(sa.key, privateKey.export({ type: 'sec1', format: 'pem' }), { mode: 0o600 });
  fs.writeFileSync(sa.pub, publicKey.export({ type: 'spki', format: 'pem' }));
  return { ca: path.join(pki, 'ca.crt'), apiserver, admin, kubeletClient, kwok, sa };
}

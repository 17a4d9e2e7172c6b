/**
 * The shipped manifests under `k8s/` as objects, and applying them to a test cluster.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import YAML from 'yaml';

/** Repository root, found from this file whether it runs from source or from `dist/`. */
const REPO_ROOT = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..');

/** The documents of a manifest under `k8s/`. */
export function manifest(file: string): k8s.KubernetesObject[] {
  return YAML.parseAllDocuments(fs.readFileSync(path.join(REPO_ROOT, 'k8s', file), 'utf8'))
    .map((d) => d.toJS() as k8s.KubernetesObject | null)
    .filter((o): o is k8s.KubernetesObject => o !== null);
}

/** Create every object of the manifests `files`, in order, as `kc`. */
export async function applyManifests(kc: k8s.KubeConfig, files: string[]): Promise<void> {
  const client = k8s.KubernetesObjectApi.makeApiClient(kc);
  for (const f of files) for (const o of manifest(f)) await client.create(o);
}

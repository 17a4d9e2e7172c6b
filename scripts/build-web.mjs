/**
 * Build step of the web inbox (`npm run build`): bundles web/ with esbuild into dist/web (content-hashed
 * assets under dist/web/assets, and index.html naming them). Everything offline; nothing from a CDN.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'web');
fs.rmSync(out, { recursive: true, force: true });
const result = await build({
  entryPoints: { app: path.join(root, 'web', 'main.tsx') },
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir: path.join(out, 'assets'),
  entryNames: '[name]-[hash]',
  metafile: true,
  logLevel: 'warning',
  tsconfig: path.join(root, 'web', 'tsconfig.json'),
});
const outputs = Object.keys(result.metafile.outputs).map((p) => path.basename(p));
const js = outputs.find((f) => /^app-.*\.js$/.test(f));
const css = outputs.find((f) => /^app-.*\.css$/.test(f));
if (!js || !css) throw new Error(`web build produced no app bundle: ${outputs.join(', ')}`);
const html = fs.readFileSync(path.join(root, 'web', 'index.html'), 'utf8').replace('%JS%', js).replace('%CSS%', css);
fs.writeFileSync(path.join(out, 'index.html'), html);

/**
 * Build step of the web inbox (`npm run build`): bundles web/ with esbuild into dist/web (content-hashed
 * assets under dist/web/assets, each beside its brotli and gzip copies, and index.html naming them).
 * Everything offline; nothing from a CDN.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
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

// Compressed once here at the highest levels, so the server only picks a file (api/web.ts).
for (const name of outputs.filter((f) => /\.(js|css)$/.test(f))) {
  const file = path.join(out, 'assets', name);
  const raw = fs.readFileSync(file);
  fs.writeFileSync(`${file}.br`, zlib.brotliCompressSync(raw, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: zlib.constants.BROTLI_MAX_QUALITY, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: raw.length } }));
  fs.writeFileSync(`${file}.gz`, zlib.gzipSync(raw, { level: zlib.constants.Z_BEST_COMPRESSION }));
}

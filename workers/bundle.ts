/**
 * Build step (`npm run build`): writes the workflow bundle next to the compiled code so workers load it as is.
 */
import fs from 'node:fs';
import { buildWorkflowBundle, PREBUILT_BUNDLE_PATH } from './worker';

buildWorkflowBundle().then(
  (bundle) => {
    fs.writeFileSync(`${PREBUILT_BUNDLE_PATH}.tmp`, bundle.code);
    fs.renameSync(`${PREBUILT_BUNDLE_PATH}.tmp`, PREBUILT_BUNDLE_PATH);
  },
  (err: unknown) => {
    process.stderr.write(`workflow bundle failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);

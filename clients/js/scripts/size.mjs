// The SDK's size as an app ships it: the core bundled, minified and gzipped, without the optional
// MessagePack codec. Fails above the budget, so CI keeps the promise the README makes.
import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Bytes, minified and gzipped; the README states the measured figure. */
const BUDGET_BYTES = 10 * 1024;

const here = dirname(fileURLToPath(import.meta.url));
const out = await build({
  entryPoints: [join(here, '..', 'src', 'index.ts')],
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2020',
  minify: true,
  legalComments: 'none',
  external: ['@msgpack/msgpack'],
  write: false,
});
const min = out.outputFiles[0].contents;
const gz = gzipSync(min, { level: 9 }).length;
console.log(`@evd/client core: ${min.length} bytes minified, ${gz} bytes gzipped (budget ${BUDGET_BYTES})`);
if (gz > BUDGET_BYTES) {
  console.error(`over budget by ${gz - BUDGET_BYTES} bytes`);
  process.exit(1);
}

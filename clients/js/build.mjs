// Builds the SDK (dist/: ES modules and .d.ts) and the page that `evd serve` embeds
// (engine/assets/app.js, committed; CI rebuilds it and fails if it differs).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pageEntry = join(here, '..', 'page', 'src', 'main.ts');
const pageOut = join(here, '..', '..', 'engine', 'assets', 'app.js');

rmSync(join(here, 'dist'), { recursive: true, force: true });

// The SDK: one module per entry point, the optional MessagePack codec kept out of the core.
await build({
  entryPoints: { index: join(here, 'src', 'index.ts'), msgpack: join(here, 'src', 'msgpack.ts') },
  outdir: join(here, 'dist'),
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2020',
  external: ['@msgpack/msgpack'],
  sourcemap: true,
  logLevel: 'warning',
});
execFileSync(process.execPath, [join(here, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(here, 'tsconfig.build.json')], {
  stdio: 'inherit',
});

// The page: one self-contained, minified module with the SDK inside; it loads nothing else.
if (existsSync(pageEntry)) {
  await build({
    entryPoints: [pageEntry],
    outfile: pageOut,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    minify: true,
    // The page speaks JSON; the MessagePack codec's dynamic import stays unresolved and unused.
    external: ['@msgpack/msgpack'],
    legalComments: 'none',
    charset: 'utf8',
    logLevel: 'warning',
  });
}
console.log('built clients/js/dist' + (existsSync(pageEntry) ? ' and engine/assets/app.js' : ''));

// Builds the SDK: dist/volley.js (one ES module, no dependencies), its type
// declarations in dist/types/, and the copy the hub embeds and serves at
// /volley.js: crates/volley-hub/assets/volley.js (committed, so that building
// the hub needs no npm).
//
//   node scripts/build.mjs           build and update the committed copy
//   node scripts/build.mjs --check   build in memory and fail if the committed
//                                    copy differs (a stale build)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PKG = path.resolve(HERE, '..');
const ASSET = path.resolve(PKG, '..', '..', 'crates', 'volley-hub', 'assets', 'volley.js');
const OUT = path.join(PKG, 'dist', 'volley.js');
const check = process.argv.includes('--check');

const { version } = JSON.parse(fs.readFileSync(path.join(PKG, 'package.json'), 'utf8'));

const result = await esbuild.build({
  absWorkingDir: PKG,
  entryPoints: ['src/index.ts'],
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2020',
  charset: 'utf8',
  legalComments: 'none',
  write: false,
  logLevel: 'warning',
  banner: {
    js: `// volley-js ${version}: the Volley hub client (volley.v1). Generated from clients/js/src by\n` +
      '// `npm run build` in clients/js; do not edit. The hub serves this file at /volley.js.',
  },
});
const built = result.outputFiles[0].text;

if (check) {
  const committed = fs.existsSync(ASSET) ? fs.readFileSync(ASSET, 'utf8') : null;
  if (committed !== built) {
    const why = committed === null ? 'is missing' : 'differs from a fresh build of clients/js/src';
    console.error(`check-build: FAIL: ${path.relative(process.cwd(), ASSET)} ${why}.`);
    console.error('check-build: run `npm run build` in clients/js and commit crates/volley-hub/assets/volley.js');
    process.exit(1);
  }
  console.log(`check-build: ok (${path.relative(process.cwd(), ASSET)} equals a fresh build, ${built.length} bytes)`);
  process.exit(0);
}

fs.mkdirSync(path.dirname(OUT), { recursive: true });
fs.writeFileSync(OUT, built);
fs.mkdirSync(path.dirname(ASSET), { recursive: true });
fs.writeFileSync(ASSET, built);

const tsc = spawnSync(process.execPath, [path.join(PKG, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json', '--emitDeclarationOnly'], {
  cwd: PKG,
  stdio: 'inherit',
});
if (tsc.status !== 0) {
  console.error('build: tsc failed');
  process.exit(1);
}
console.log(`build: wrote dist/volley.js, dist/types/ and ${path.relative(process.cwd(), ASSET)} (${built.length} bytes)`);

// Builds the SDK, from src/ with esbuild (bundles) and tsc (declarations):
//   dist/esm/index.js    one ES module, no dependencies ("import" in exports)
//   dist/cjs/index.js    the same as CommonJS ("require" in exports)
//   dist/{esm,cjs}/*.d.ts  the type declarations, once per module system (each
//                        folder has a package.json naming its module type, so
//                        TypeScript reads the declarations in the right mode)
// and the copy the hub embeds and serves at /volley.js:
// crates/volley-hub/assets/volley.js (the ES module; committed, so that
// building the hub needs no npm).
//
//   node scripts/build.mjs              dist/ and the committed copy (`npm run build`)
//   node scripts/build.mjs --dist-only  dist/ only (`prepare`: npm ci, npm pack, npm
//                                       install from git), so that installing never
//                                       touches the committed copy
//   node scripts/build.mjs --check      build in memory and fail if the committed
//                                       copy differs (a stale build)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PKG = path.resolve(HERE, '..');
const ASSET = path.resolve(PKG, '..', '..', 'crates', 'volley-hub', 'assets', 'volley.js');
const DIST = path.join(PKG, 'dist');
const check = process.argv.includes('--check');
const distOnly = process.argv.includes('--dist-only');

const { version } = JSON.parse(fs.readFileSync(path.join(PKG, 'package.json'), 'utf8'));
const GENERATED = `// volley-js ${version}: the Volley hub client (volley.v1). Generated from clients/js/src by\n`;

/** Bundles src/ as one file of `format` ("esm" or "cjs"); resolves with its text. */
async function bundle(format, note) {
  const result = await esbuild.build({
    absWorkingDir: PKG,
    entryPoints: ['src/index.ts'],
    bundle: true,
    format,
    platform: 'neutral',
    target: 'es2020',
    charset: 'utf8',
    legalComments: 'none',
    write: false,
    logLevel: 'warning',
    banner: { js: `${GENERATED}// \`npm run build\` in clients/js; do not edit. ${note}` },
  });
  return result.outputFiles[0].text;
}

const esm = await bundle('esm', 'The hub serves this file at /volley.js.');
const rel = (p) => path.relative(process.cwd(), p);

if (check) {
  const committed = fs.existsSync(ASSET) ? fs.readFileSync(ASSET, 'utf8') : null;
  if (committed !== esm) {
    const why = committed === null ? 'is missing' : 'differs from a fresh build of clients/js/src';
    console.error(`check-build: FAIL: ${rel(ASSET)} ${why}.`);
    console.error('check-build: run `npm run build` in clients/js and commit crates/volley-hub/assets/volley.js');
    process.exit(1);
  }
  console.log(`check-build: ok (${rel(ASSET)} equals a fresh build, ${esm.length} bytes)`);
  process.exit(0);
}

const cjs = await bundle('cjs', 'The CommonJS build of the package.');

fs.rmSync(DIST, { recursive: true, force: true });
const ESM_DIR = path.join(DIST, 'esm');
const CJS_DIR = path.join(DIST, 'cjs');
for (const [dir, type, text] of [
  [ESM_DIR, 'module', esm],
  [CJS_DIR, 'commonjs', cjs],
]) {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'index.js'), text);
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify({ type })}\n`);
}

const tsc = spawnSync(
  process.execPath,
  [path.join(PKG, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json', '--emitDeclarationOnly', '--outDir', ESM_DIR],
  { cwd: PKG, stdio: 'inherit' },
);
if (tsc.status !== 0) {
  console.error('build: tsc failed');
  process.exit(1);
}
for (const file of fs.readdirSync(ESM_DIR).filter((f) => f.endsWith('.d.ts'))) {
  fs.copyFileSync(path.join(ESM_DIR, file), path.join(CJS_DIR, file));
}

if (!distOnly) {
  fs.mkdirSync(path.dirname(ASSET), { recursive: true });
  fs.writeFileSync(ASSET, esm);
}
console.log(`build: wrote dist/esm and dist/cjs (bundles and declarations)${distOnly ? '' : ` and ${rel(ASSET)} (${esm.length} bytes)`}`);

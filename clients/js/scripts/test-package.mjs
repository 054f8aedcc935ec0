// Tests the package as users get it: `npm pack` (dist/ removed first, so the
// `prepare` script must build it), then a scratch project in a temp dir (a
// copy of packaging/, its dependencies from its lockfile) installs the tarball
// and uses it:
//   - the tarball holds dist/, package.json and the README only, and every
//     file that package.json's main, module, types and exports name;
//   - tsc type-checks `new Client(url, { WebSocket })` with the `ws` package
//     from an ES module and from a CommonJS one (the `import` and `require`
//     types), with Node 22's global WebSocket, and with the DOM's;
//   - esbuild bundles it for the browser and for Node;
//   - Node loads it with `import` and with `require`, and the Node bundle runs:
//     against a real `volley serve` when VOLLEY_BIN names the binary (connect,
//     subscribe, publish, receive, history), else constructing a client only.
//
// One line per check, then "package: N passed, M failed"; exit status 1 on a
// failure. Env: VOLLEY_BIN (the release binary; unset: no hub),
// PACKAGE_TEST_TIMEOUT (overall limit in seconds, default 600).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Tally, installGuards, log } from '../../../tests/browser/harness.mjs';
import { startHub as startVolley } from '../../../tests/e2e/hub.mjs';

const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURE = path.join(PKG, 'packaging');

const OVERALL_TIMEOUT_MS = Number(process.env.PACKAGE_TEST_TIMEOUT || 600) * 1000;
const NPM_FLAGS = ['--no-audit', '--no-fund', '--loglevel=error', '--prefer-offline'];

const tally = new Tally('package');
const check = tally.check.bind(tally);
let hub = null;
const children = new Set();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'volley-js-package-'));
const app = path.join(tmp, 'app');
log(`scratch dir: ${tmp} (removed when every check passed)`);

/** Runs `cmd args` in `cwd` within `timeoutMs`; resolves with its exit code and output. */
function run(cmd, args, { cwd, timeoutMs = 120_000, env = {} }) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      cwd,
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c) => (stderr += c));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, timeoutMs);
    const done = (code, error) => {
      clearTimeout(timer);
      children.delete(child);
      if (timedOut) stderr += `\n(timed out after ${timeoutMs / 1000} s)`;
      if (error) stderr += `\n${error.message}`;
      resolve({ code: timedOut ? 124 : code, stdout, stderr });
    };
    child.on('error', (e) => done(127, e));
    child.on('close', (code) => done(code ?? 1));
  });
}

function killGroup(child) {
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
}

/** The last lines of a command's output, for a failure's detail. */
function tail(result, lines = 12) {
  return `exit ${result.code}:\n${`${result.stdout}\n${result.stderr}`.trim().split('\n').slice(-lines).join('\n')}`;
}

/** Every string in package.json's main, module, types and exports (the files it promises). */
function promisedFiles(pkg) {
  const out = new Set();
  const walk = (v) => {
    if (typeof v === 'string') out.add(path.posix.normalize(v));
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  [pkg.main, pkg.module, pkg.types, pkg.typings, pkg.exports].forEach(walk);
  return [...out].filter((f) => !f.includes('*'));
}

async function pack() {
  fs.rmSync(path.join(PKG, 'dist'), { recursive: true, force: true });
  const r = await run('npm', ['pack', '--json', '--pack-destination', tmp, ...NPM_FLAGS], { cwd: PKG, timeoutMs: 180_000 });
  if (r.code !== 0) {
    check('npm pack', false, tail(r));
    return null;
  }
  const json = JSON.parse(r.stdout.slice(r.stdout.search(/^\[/m)));
  const files = json[0].files.map((f) => f.path);
  const pkg = JSON.parse(fs.readFileSync(path.join(PKG, 'package.json'), 'utf8'));
  const extra = files.filter((f) => !f.startsWith('dist/') && !/^(package\.json|README\.md|LICENSE[^/]*)$/.test(f));
  const missing = promisedFiles(pkg).filter((f) => !files.includes(f.replace(/^\.\//, '')));
  check(
    'npm pack (dist/ removed first): only dist/, package.json and the README; every file package.json names',
    extra.length === 0 && missing.length === 0 && files.some((f) => f.startsWith('dist/')),
    `${json[0].filename}, ${files.length} files, ${json[0].size} bytes` +
      (extra.length ? `; not for users: ${extra.join(', ')}` : '') +
      (missing.length ? `; named but missing: ${missing.join(', ')}` : ''),
  );
  return path.join(tmp, json[0].filename);
}

async function scratchProject(tarball) {
  fs.cpSync(FIXTURE, app, { recursive: true, filter: (src) => !src.includes(`${path.sep}node_modules`) });
  let r = await run('npm', ['ci', ...NPM_FLAGS], { cwd: app, timeoutMs: 300_000 });
  if (r.code === 0) r = await run('npm', ['install', '--no-save', ...NPM_FLAGS, tarball], { cwd: app, timeoutMs: 300_000 });
  return check('scratch project: npm ci, then the tarball installed', r.code === 0, r.code === 0 ? app : tail(r));
}

async function typeCheck() {
  const tsc = path.join(app, 'node_modules', 'typescript', 'bin', 'tsc');
  let r = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: app });
  check("tsc (nodenext): `new Client(url, { WebSocket })` with ws's WebSocket from ESM and CJS, and Node 22's global", r.code === 0, r.code === 0 ? '' : tail(r));
  r = await run(process.execPath, [tsc, '-p', 'tsconfig.dom.json'], { cwd: app });
  check("tsc (bundler, DOM): the browser's WebSocket and fetch", r.code === 0, r.code === 0 ? '' : tail(r));
}

async function bundle() {
  const esbuild = path.join(app, 'node_modules', 'esbuild', 'bin', 'esbuild');
  const browser = await run(esbuild, ['browser.ts', '--bundle', '--format=esm', '--platform=browser', '--outfile=out/browser.js'], { cwd: app });
  const node = await run(esbuild, ['consumer.cjs', '--bundle', '--format=cjs', '--platform=node', '--external:ws', '--outfile=out/node.cjs'], { cwd: app });
  const bad = [browser, node].find((r) => r.code !== 0);
  const bundled = (f) => fs.existsSync(path.join(app, 'out', f)) && fs.readFileSync(path.join(app, 'out', f), 'utf8').includes('volley.v1');
  check(
    'esbuild: a browser bundle (ESM) and a Node bundle (CJS) of the package',
    bad === undefined && bundled('browser.js') && bundled('node.cjs'),
    bad ? tail(bad) : 'out/browser.js, out/node.cjs',
  );
}

async function runtime(url) {
  const cases = [
    ['Node ESM: import', ['consumer.mjs']],
    ['Node CJS: require', ['consumer.cjs']],
    ['the esbuild Node bundle', ['out/node.cjs']],
  ];
  for (const [name, args] of cases) {
    const label = name.startsWith('the') ? 'bundle' : undefined;
    const r = await run(process.execPath, url ? [...args, url] : args, {
      cwd: app,
      timeoutMs: 30_000,
      env: label ? { SCENARIO_LABEL: label } : {},
    });
    check(`${name} loads volley-js and ${url ? 'works against volley serve' : 'constructs a client'}`, r.code === 0, r.code === 0 ? r.stdout.trim().split('\n').pop() : tail(r));
  }
}

/** Starts `volley serve` with an anonymous, publishable namespace `pack` when VOLLEY_BIN is set. */
async function startHub() {
  if (!process.env.VOLLEY_BIN) {
    log('note: VOLLEY_BIN is unset: the runtime checks construct a client without a hub');
    return null;
  }
  const config = path.join(tmp, 'hub.toml');
  fs.writeFileSync(
    config,
    'allow_anonymous = true\n[namespaces.pack]\nallow_publish = true\nallow_anonymous = true\nhistory_size = 10\nhistory_ttl = 60\n',
  );
  hub = await startVolley({ apiKey: `pack-${randomBytes(8).toString('hex')}`, extraArgs: ['--config', config], log });
  return `ws://${hub.addr}/connection/websocket`;
}

async function cleanup() {
  for (const child of children) killGroup(child);
  if (hub) await hub.stop();
}

installGuards({
  timeoutMs: OVERALL_TIMEOUT_MS,
  tally,
  cleanup,
  onExit: () => {
    for (const child of children) killGroup(child);
    hub?.killNow();
  },
});

try {
  const tarball = await pack();
  if (tarball && (await scratchProject(tarball))) {
    await typeCheck();
    await bundle();
    let url = null;
    try {
      url = await startHub();
    } catch (e) {
      check('volley serve started', false, e.message.split('\n')[0]);
    }
    if (url || !process.env.VOLLEY_BIN) await runtime(url);
  }
} catch (e) {
  check('package test ran to the end', false, e.stack || String(e));
} finally {
  await cleanup();
}
if (tally.failed === 0) fs.rmSync(tmp, { recursive: true, force: true });
else log(`the scratch project is kept in ${tmp}`);
log(tally.summary());
process.exit(tally.failed === 0 ? 0 : 1);

// What the Node test scripts share (tests/browser/deflate.mjs,
// tests/e2e/*.mjs and clients/js/scripts/test-package.mjs): the PASS/FAIL
// lines and their count, bounded waits, the overall time limit and signal
// handling, and how Chromium is started on these machines.

/** The Chromium binary (Debian's, from apt). */
export const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

/** Chromium flags for a headless run with nothing reaching outside loopback. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Writes one line to stdout. */
export function log(msg) {
  process.stdout.write(`${msg}\n`);
}

/**
 * The checks of a test script: each prints `PASS: name (detail)` or
 * `FAIL: ...`, and `summary()` is the last line the run.sh scripts read,
 * `N passed, M failed` (after `label: ` when a label is given).
 */
export class Tally {
  passed = 0;
  failed = 0;

  constructor(label = '') {
    this.prefix = label ? `${label}: ` : '';
  }

  /** Counts and prints one check; returns whether it passed. */
  check(name, ok, detail = '') {
    ok = Boolean(ok);
    if (ok) this.passed++;
    else this.failed++;
    log(`${ok ? 'PASS' : 'FAIL'}: ${name}${detail ? ` (${detail})` : ''}`);
    return ok;
  }

  /** `N passed, M failed`, after the label. */
  summary() {
    return `${this.prefix}${this.passed} passed, ${this.failed} failed`;
  }
}

/** `promise`, or a rejection naming `what` after `ms` milliseconds. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Ends the script with exit code 1 when it runs past `timeoutMs` or gets
 * SIGINT, SIGTERM or SIGHUP, after `cleanup()` (given 15 s at most). A
 * time-out is a failed check of `tally`, then its summary is printed.
 * `onExit` runs synchronously when the process exits, whatever the reason
 * (kill child processes there). Returns a function that lifts the time limit.
 */
export function installGuards({ timeoutMs, tally, cleanup, onExit }) {
  const stop = () => {
    cleanup().finally(() => process.exit(1));
    setTimeout(() => process.exit(1), 15_000).unref();
  };
  if (onExit) process.on('exit', onExit);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      log(`interrupted by ${sig}`);
      stop();
    });
  }
  const watchdog = setTimeout(() => {
    tally.check(`overall time limit of ${timeoutMs / 1000} s exceeded`, false);
    log(tally.summary());
    stop();
  }, timeoutMs);
  watchdog.unref();
  return () => clearTimeout(watchdog);
}

// What the Node test scripts share (tests/browser/deflate.mjs and
// tests/e2e/*.mjs): bounded waits, the overall time limit and signal
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
 * SIGINT, SIGTERM or SIGHUP, after `cleanup()` (given 15 s at most).
 * `onTimeout` reports the time-out (counts it as a failure and prints the
 * totals); `onExit` runs synchronously when the process exits, whatever the
 * reason (kill child processes there). Returns a function that lifts the
 * time limit.
 */
export function installGuards({ timeoutMs, log, cleanup, onTimeout, onExit }) {
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
    log(`FAIL: overall time limit of ${timeoutMs / 1000} s exceeded`);
    onTimeout();
    stop();
  }, timeoutMs);
  watchdog.unref();
  return () => clearTimeout(watchdog);
}

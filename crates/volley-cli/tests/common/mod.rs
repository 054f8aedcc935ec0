//! The `volley` binary as a child process: its stdout and stderr lines as
//! they come, signals, and a bounded wait for its exit.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod services;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// A running `volley`; killed on drop.
pub struct Volley {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    /// Every stderr line read so far.
    pub stderr_seen: Vec<String>,
    /// Every stdout line read so far.
    pub stdout_seen: Vec<String>,
}

fn lines(source: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Volley {
    /// Starts `volley ARGS` with the environment changes `env`.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Volley {
        let mut command = Command::new(env!("CARGO_BIN_EXE_volley"));
        command
            .args(args)
            .env_remove("NO_COLOR")
            .env_remove("VOLLEY_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn volley");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Volley {
            child,
            stdout,
            stderr,
            stderr_seen: Vec::new(),
            stdout_seen: Vec::new(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line (at most 30 s).
    pub fn stdout_line(&mut self) -> String {
        match self.stdout.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                self.stdout_seen.push(line.clone());
                line
            }
            Err(e) => {
                let stderr = self.drain_stderr();
                panic!(
                    "no stdout line within 30 s ({e}); stdout so far {:?}, stderr {stderr:?}",
                    self.stdout_seen
                )
            }
        }
    }

    /// Reads stdout until a line contains `needle` (at most 30 s).
    pub fn stdout_until(&mut self, needle: &str) -> String {
        loop {
            let line = self.stdout_line();
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// The address of the first stdout line, `volley ... listening on SCHEME://ADDR/`.
    pub fn listening(&mut self) -> String {
        let first = self.stdout_line();
        let (_, url) = first
            .split_once(" listening on ")
            .unwrap_or_else(|| panic!("first line {first:?}"));
        let addr = url.split_once("://").map_or(url, |(_, a)| a);
        addr.trim_end_matches('/').to_string()
    }

    /// Reads stderr until a line contains `needle`, within `limit`.
    pub fn stderr_until(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no stderr line with {needle:?} within {limit:?} ({e}); stderr: {:#?}",
                    self.stderr_seen
                ),
            }
        }
    }

    /// Every stderr line that arrived, without waiting.
    pub fn drain_stderr(&mut self) -> Vec<String> {
        while let Ok(line) = self.stderr.try_recv() {
            self.stderr_seen.push(line);
        }
        self.stderr_seen.clone()
    }

    /// Sends a signal (`INT`, `TERM`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the exit, at most `limit`; `None` if it is still running.
    pub fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Everything it wrote to stderr, up to the pipe's end.
                let until = Instant::now() + Duration::from_secs(10);
                while let Ok(line) = self
                    .stderr
                    .recv_timeout(until.saturating_duration_since(Instant::now()))
                {
                    self.stderr_seen.push(line);
                }
                return Some(status);
            }
            // Bounded polling of the exit status: std has no wait with a
            // timeout. Stderr lines are collected meanwhile.
            match self.stderr.recv_timeout(Duration::from_millis(20)) {
                Ok(line) => self.stderr_seen.push(line),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// VmRSS of the process, in KiB, from /proc/PID/status.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Open file descriptors of the process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }
}

impl Drop for Volley {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A real `redis-server` for a test: its own free port and temporary
//! directory, stopped by PID when dropped. Shared by the engine and cluster
//! tests (and any test that needs Redis).
//!
//! When `redis-server` is not on PATH, [`RedisServer::start`] returns `None`
//! and the test prints why and returns, unless `VOLLEY_REQUIRE_SERVICES=1`
//! (set by scripts/test-all.sh, so CI fails rather than skips) or
//! `VOLLEY_REQUIRE_REDIS=1`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Persistence of a test Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing survives a restart.
    None,
    /// Append-only file, fsync at every write: everything survives a kill.
    Aof,
}

/// A running `redis-server`.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    persistence: Persistence,
    child: Option<Child>,
    extra: Vec<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `redis-server` can run here; panics when it cannot and
/// `VOLLEY_REQUIRE_REDIS=1`.
pub fn available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let required = ["VOLLEY_REQUIRE_SERVICES", "VOLLEY_REQUIRE_REDIS"]
            .iter()
            .any(|v| std::env::var(v).as_deref() == Ok("1"));
        assert!(
            !required,
            "redis-server is not on PATH and VOLLEY_REQUIRE_SERVICES=1: \
             install it (Debian: apt-get install redis-server; .ci/run does)"
        );
        eprintln!(
            "SKIPPED: redis-server is not on PATH (VOLLEY_REQUIRE_SERVICES=1 makes this fail)"
        );
    }
    found
}

impl RedisServer {
    /// Starts a Redis on a free port; `None` when there is no redis-server
    /// (and it is not required).
    pub fn start(persistence: Persistence) -> Option<Self> {
        Self::start_with(persistence, &[])
    }

    /// Starts a Redis with extra arguments (`--replicaof`, ...).
    pub fn start_with(persistence: Persistence, extra: &[&str]) -> Option<Self> {
        if !available() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "volley-redis-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            port: 0,
            dir,
            persistence,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        // A port taken between the probe and the bind: try another.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return Some(server);
            }
        }
        panic!(
            "redis-server did not start (log in {})",
            server.dir.display()
        );
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--save")
            .arg("")
            .arg("--logfile")
            .arg(self.dir.join("redis.log"));
        match self.persistence {
            Persistence::None => {
                cmd.arg("--appendonly").arg("no");
            }
            Persistence::Aof => {
                cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
            }
        }
        cmd.args(&self.extra);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                self.child = Some(child);
                return true;
            }
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Kills the server (SIGKILL, by PID) and waits for it to end.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts it again on the same port and directory: with
    /// [`Persistence::Aof`] it comes back with its data, else empty.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(Instant::now() < deadline, "redis-server did not restart");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs one command over RESP; the raw reply.
    pub fn command(&self, args: &[&str]) -> String {
        command(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    t ^ (NEXT.fetch_add(1, Ordering::Relaxed) << 32)
}

/// A `redis-sentinel` watching one master, on a free port, stopped by PID.
pub struct Sentinel {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Sentinel {
    /// Starts a Sentinel that monitors `master_port` as `name` (quorum 1,
    /// down after 1 s); `None` when there is no redis-sentinel.
    pub fn start(name: &str, master_port: u16) -> Option<Self> {
        if !available() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "volley-sentinel-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nlogfile {}\n\
                     sentinel monitor {name} 127.0.0.1 {master_port} 1\n\
                     sentinel down-after-milliseconds {name} 1000\n\
                     sentinel failover-timeout {name} 5000\n",
                    dir.display(),
                    dir.join("sentinel.log").display()
                ),
            )
            .unwrap();
            let mut child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if ping(port) {
                    return Some(Self {
                        port,
                        dir,
                        child: Some(child),
                    });
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-sentinel did not start (log in {})", dir.display());
    }

    /// Runs one command on the Sentinel; the raw reply.
    pub fn command(&self, args: &[&str]) -> String {
        command(self.port, args)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs one command over RESP on `port`; the raw reply.
fn command(port: u16, args: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 65536];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

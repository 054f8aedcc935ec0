//! A real HAProxy (Debian's `haproxy`) in front of hubs: the configuration
//! of `tests/lib/haproxy.cfg` (TCP mode, PROXY protocol v2, health checks),
//! on a free port, in a temporary directory, stopped by PID when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The configuration the tests, `scripts/cluster.sh` and docs/cluster.md share.
pub const TEMPLATE: &str = include_str!("../../../../tests/lib/haproxy.cfg");

/// A running HAProxy.
pub struct Haproxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

/// A port nobody listens on now (the kernel picks it).
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("the bound address")
}

/// The configuration for these backends, listening on `listen`.
pub fn config(listen: SocketAddr, backends: &[SocketAddr]) -> String {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("    server node{i} {addr}\n"))
        .collect();
    TEMPLATE
        .replace("@LISTEN@", &listen.to_string())
        .replace("@SERVERS@", &servers)
}

impl Haproxy {
    /// Starts HAProxy in front of `backends` and waits until a request
    /// through it reaches one of them (`GET /health/live`).
    pub async fn start(backends: &[SocketAddr]) -> Self {
        let addr = free_addr();
        let dir = std::env::temp_dir().join(format!(
            "volley-haproxy-{}-{}",
            std::process::id(),
            addr.port()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, config(addr, backends)).expect("write haproxy.cfg");
        let log = std::fs::File::create(dir.join("haproxy.log")).expect("haproxy.log");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("haproxy runs (Debian package haproxy; .ci/run installs it)");
        let mut haproxy = Self { addr, child, dir };
        haproxy.wait_ready().await;
        haproxy
    }

    /// The process id (to stop or signal it by PID).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("haproxy exited with {status}: {}", self.log());
            }
            if self.health_live().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy on {} not ready in 10 s: {}",
                self.addr,
                self.log()
            );
            // Readiness polling of an external process (nothing to await).
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn health_live(&self) -> bool {
        let request = "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let attempt = async {
            let mut s = TcpStream::connect(self.addr).await.ok()?;
            s.write_all(request.as_bytes()).await.ok()?;
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.ok()?;
            Some(out.starts_with(b"HTTP/1.1 200"))
        };
        tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }

    /// HAProxy's own output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        // SIGKILL to this PID only, then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! Services for the CLI's black-box tests: `volley
//! serve` and `volley echo` processes, in-process echo servers (plain and
//! TLS with a test CA), and the real proxies (tinyproxy, microsocks)
//! started on free ports with temporary configs and stopped by PID.
//!
//! A test that needs a proxy binary that is not installed prints SKIPPED,
//! unless `VOLLEY_REQUIRE_SERVICES=1` (set by scripts/test-all.sh), where it
//! fails.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

/// The `volley` binary under test.
pub fn volley_bin() -> String {
    std::env::var("CHAOS_VOLLEY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_volley").to_string())
}

/// A fresh temporary directory, removed by its owner.
pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("volley-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether `binary` is installed. When it is not: fails under
/// VOLLEY_REQUIRE_SERVICES=1, else says SKIPPED and returns false.
pub fn require(binary: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(binary).is_file()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var("VOLLEY_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "{binary} is not installed and VOLLEY_REQUIRE_SERVICES=1 (install it: .ci/run does)"
        );
        eprintln!("SKIPPED: {binary} is not installed (VOLLEY_REQUIRE_SERVICES=1 makes this fail)");
    }
    found
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (at most 10 s) until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while StdTcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the service exited ({status}) before listening on {addr}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on {addr} after 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A service process, killed (by its PID) on drop, with its temp dir.
pub struct Service {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

impl Service {
    /// The service's log (stderr and its own log file).
    pub fn log(&self) -> String {
        let mut out = String::new();
        for name in ["stderr.log", "service.log"] {
            out.push_str(&std::fs::read_to_string(self.dir.join(name)).unwrap_or_default());
        }
        out
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn_service(tag: &str, port: u16, dir: PathBuf, mut command: Command) -> Service {
    let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stderr.try_clone().unwrap())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {tag}: {e}"));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_listening(addr, &mut child, &dir.join("stderr.log"));
    Service { child, addr, dir }
}

/// tinyproxy on a free port: HTTP CONNECT, with Basic auth when
/// `credentials` are given; `connect_ports` limits the CONNECT ports (empty:
/// all).
pub fn tinyproxy(credentials: Option<(&str, &str)>, connect_ports: &[u16]) -> Service {
    let dir = temp_dir("tinyproxy");
    let port = free_port();
    let mut config = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 50\nLogLevel Info\n\
         LogFile \"{}\"\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
        dir.join("service.log").display()
    );
    if let Some((user, password)) = credentials {
        config.push_str(&format!("BasicAuth {user} {password}\n"));
    }
    for p in connect_ports {
        config.push_str(&format!("ConnectPort {p}\n"));
    }
    // Run as the current user (root in CI drops to nobody, who must be able
    // to write the log).
    if nix_is_root() {
        config.push_str("User nobody\nGroup nogroup\n");
        let _ = Command::new("chmod").arg("777").arg(&dir).status();
    }
    let path = dir.join("tinyproxy.conf");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new("tinyproxy");
    command.arg("-d").arg("-c").arg(&path);
    spawn_service("tinyproxy", port, dir, command)
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// microsocks on a free port: SOCKS5, with username/password auth when
/// `credentials` are given.
pub fn microsocks(credentials: Option<(&str, &str)>) -> Service {
    let dir = temp_dir("microsocks");
    let port = free_port();
    let mut command = Command::new("microsocks");
    command.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((user, password)) = credentials {
        command.args(["-u", user, "-P", password]);
    }
    spawn_service("microsocks", port, dir, command)
}

/// `volley echo` on a free port; its ws:// URL.
pub struct EchoProcess {
    pub child: Child,
    pub url: String,
}

impl EchoProcess {
    pub fn start() -> Self {
        let mut child = Command::new(volley_bin())
            .args(["echo", "--port", "0", "--no-compression"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first
            .trim()
            .strip_prefix("volley echo listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Self { child, url }
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA, a server certificate for 127.0.0.1 and localhost, and a
/// client certificate for mutual TLS.
pub struct TestPki {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
    /// The same server certificate, and client certificates signed by the
    /// CA required.
    pub server_mtls: Arc<rustls::ServerConfig>,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl TestPki {
    pub fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "volley test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let provider = volley::crypto_provider();
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key_der.clone_key())
            .unwrap();
        let client_key = rcgen::KeyPair::generate().unwrap();
        let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "volley test client");
        let client_cert = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let server_mtls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert.der().clone()], key_der)
            .unwrap();
        Self {
            ca_pem: ca.pem(),
            server: Arc::new(server),
            server_mtls: Arc::new(server_mtls),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }
}

/// An in-process echo server on 127.0.0.1 (TLS with `tls`); its URL. With
/// `transform`, replies are transformed (a server that answers differently).
pub async fn echo_server(
    tls: Option<Arc<rustls::ServerConfig>>,
    transform: Option<fn(volley::Message) -> volley::Message>,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(config) => {
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await
                        else {
                            return;
                        };
                        if let Ok(ws) = volley::accept(stream).await {
                            echo(ws, transform).await;
                        }
                    }
                    None => {
                        if let Ok(ws) = volley::accept(tcp).await {
                            echo(ws, transform).await;
                        }
                    }
                }
            });
        }
    });
    format!("{scheme}://127.0.0.1:{port}/")
}

/// A TLS front for `upstream` (an `https://` proxy made of a TLS
/// terminator and a plain proxy behind it); its address.
pub async fn tls_relay(config: Arc<rustls::ServerConfig>, upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let config = config.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

async fn echo<S>(
    mut ws: volley::WebSocket<S>,
    transform: Option<fn(volley::Message) -> volley::Message>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(m)) = ws.recv().await {
        let reply = match transform {
            Some(f) => f(m),
            None => m,
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    }
}

// ---- the hub process ---------------------------------------------------------

/// A running `volley serve`; killed (by PID) on drop.
pub struct Hub {
    pub child: Child,
    pub addr: String,
    pub dir: PathBuf,
}

impl Hub {
    /// Starts `volley serve` on a free port with `config` (TOML).
    pub fn start(config: &str) -> Hub {
        Self::start_on(config, "127.0.0.1:0")
    }

    /// Starts `volley serve --listen listen` with `config` (TOML).
    pub fn start_on(config: &str, listen: &str) -> Hub {
        let dir = temp_dir("hub");
        let config_path = dir.join("volley.toml");
        std::fs::write(&config_path, config).unwrap();
        let stderr = std::fs::File::create(dir.join("serve.log")).unwrap();
        let mut child = Command::new(volley_bin())
            .args(["serve", "--listen", listen, "--config"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn volley serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let mut hub = Hub {
            child,
            addr: String::new(),
            dir,
        };
        let first = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                hub.dump_log();
                panic!("volley serve printed no first line within 30 s");
            }
        };
        let addr = first
            .strip_prefix("volley serve listening on http://")
            .and_then(|rest| rest.strip_suffix('/'))
            .unwrap_or_else(|| {
                panic!(
                    "first stdout line {first:?} is not `volley serve listening on http://ADDR/`"
                )
            });
        hub.addr = addr.to_string();
        hub
    }

    pub fn dump_log(&self) {
        let log = std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        eprintln!("---- last 40 lines of the server's stderr ----");
        for l in &lines[lines.len().saturating_sub(40)..] {
            eprintln!("{l}");
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

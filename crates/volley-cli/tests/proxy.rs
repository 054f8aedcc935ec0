//! The client through real proxies started on free ports: tinyproxy (HTTP
//! CONNECT, with and without Basic auth) and microsocks (SOCKS5, with and
//! without username/password), ws:// and wss:// (a TLS echo server with a
//! test CA) through each; the typed errors of the library and the exit
//! codes of `volley connect` for wrong credentials, a refused CONNECT, an
//! unreachable proxy and a proxy that never answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::services::{
    self, EchoProcess, TestPki, echo_server, microsocks, require, tinyproxy, tls_relay,
};
use volley::{ClientBuilder, Message, Proxy, ProxyError};

/// Sends one message through `proxy` to `url` and checks the echo.
async fn round_trip(url: &str, proxy: &str, ca_pem: &str) -> Result<(), volley::Error> {
    let mut builder = ClientBuilder::new(url).proxy(Proxy::parse(proxy)?);
    if !ca_pem.is_empty() {
        builder = builder.add_root_certificates_pem(ca_pem.as_bytes())?;
    }
    let (mut ws, _) = builder
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    let text = format!("through {proxy} to {url}");
    ws.send(text.as_str()).await?;
    let echoed = ws.recv().await.expect("an echo")?;
    assert_eq!(echoed, Message::text(text));
    ws.close(volley::CloseCode::from(1000), "").await?;
    Ok(())
}

/// `volley connect` in pipe mode with `args`, the proxy variables ignored:
/// its exit code and stderr.
fn cli(args: &[&str]) -> (i32, String) {
    let mut all = args.to_vec();
    all.push("--no-env-proxy");
    cli_env(&all, &[])
}

/// `volley connect` in pipe mode with `args` and only the proxy variables
/// of `env`: its exit code and stderr.
fn cli_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(services::volley_bin());
    command
        .arg("connect")
        .args(args)
        .args(["--connect-timeout", "5s", "--linger", "0"])
        .stdin(Stdio::null());
    for name in [
        "http_proxy",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connect_proxy_with_and_without_basic_auth() {
    if !require("tinyproxy") {
        return;
    }
    let pki = TestPki::new();
    let ws_url = echo_server(None, None).await;
    let wss_url = echo_server(Some(pki.server.clone()), None).await;

    let open = tinyproxy(None, &[]);
    let proxy = format!("http://{}", open.addr);
    round_trip(&ws_url, &proxy, &pki.ca_pem).await.unwrap();
    round_trip(&wss_url, &proxy, &pki.ca_pem).await.unwrap();
    let log = open.log();
    assert!(
        log.contains("CONNECT"),
        "tinyproxy logged no CONNECT:\n{log}"
    );

    let guarded = tinyproxy(Some(("alice", "s3cret")), &[]);
    let good = format!("http://alice:s3cret@{}", guarded.addr);
    round_trip(&ws_url, &good, &pki.ca_pem).await.unwrap();
    round_trip(&wss_url, &good, &pki.ca_pem).await.unwrap();

    for bad in [
        format!("http://alice:wrong@{}", guarded.addr),
        format!("http://{}", guarded.addr),
    ] {
        match round_trip(&ws_url, &bad, &pki.ca_pem).await {
            Err(volley::Error::Proxy(ProxyError::AuthFailed { detail, .. })) => {
                assert!(detail.contains("401") || detail.contains("407"), "{detail}");
            }
            other => panic!("expected AuthFailed through {bad}, got {other:?}"),
        }
    }
    // The CLI: --proxy-user overrides, wrong credentials exit 6.
    let bare = format!("http://{}", guarded.addr);
    let (code, stderr) = cli(&[&ws_url, "--proxy", &bare, "--proxy-user", "alice:wrong"]);
    assert_eq!(code, 6, "stderr: {stderr}");
    assert!(stderr.contains("authentication failed"), "{stderr}");
    let (code, stderr) = cli(&[&ws_url, "--proxy", &bare, "--proxy-user", "alice:s3cret"]);
    assert_eq!(code, 0, "stderr: {stderr}");

    // The environment, as curl reads it: http_proxy for ws://,
    // HTTPS_PROXY for wss://, NO_PROXY bypasses.
    let wrong = format!("http://alice:wrong@{}", guarded.addr);
    let (code, stderr) = cli_env(&[&ws_url], &[("http_proxy", &wrong)]);
    assert_eq!(code, 6, "http_proxy must be used; stderr: {stderr}");
    let (code, stderr) = cli_env(&[&ws_url], &[("HTTP_PROXY", &wrong)]);
    assert_eq!(
        code, 0,
        "HTTP_PROXY must be ignored, as curl does; stderr: {stderr}"
    );
    let (code, stderr) = cli_env(&[&wss_url], &[("HTTPS_PROXY", &wrong)]);
    assert_eq!(code, 6, "HTTPS_PROXY must be used; stderr: {stderr}");
    let (code, stderr) = cli_env(
        &[&ws_url],
        &[("ALL_PROXY", &wrong), ("NO_PROXY", "localhost,127.0.0.0/8")],
    );
    assert_eq!(code, 0, "NO_PROXY must bypass; stderr: {stderr}");
    let (code, stderr) = cli_env(&[&ws_url, "--no-env-proxy"], &[("http_proxy", &wrong)]);
    assert_eq!(code, 0, "--no-env-proxy; stderr: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_carries_ws_and_wss_inside_tls() {
    if !require("tinyproxy") {
        return;
    }
    let pki = TestPki::new();
    let ws_url = echo_server(None, None).await;
    let wss_url = echo_server(Some(pki.server.clone()), None).await;
    // TLS to the proxy (the test CA's certificate), tinyproxy behind it.
    let proxy = tinyproxy(Some(("carol", "pa55")), &[]);
    let front = tls_relay(pki.server.clone(), proxy.addr).await;
    let url = format!("https://carol:pa55@{front}");
    round_trip(&ws_url, &url, &pki.ca_pem).await.unwrap();
    // wss:// inside: TLS to the server inside TLS to the proxy.
    round_trip(&wss_url, &url, &pki.ca_pem).await.unwrap();
    // Without the CA the proxy's certificate is refused.
    match ClientBuilder::new(ws_url.as_str())
        .proxy(Proxy::parse(&url).unwrap())
        .connect()
        .await
    {
        Err(volley::Error::Proxy(ProxyError::Unreachable { source, .. })) => {
            assert!(source.to_string().contains("certificate"), "{source}")
        }
        other => panic!(
            "expected a refused proxy certificate, got {:?}",
            other.map(|_| ())
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_for_mutual_tls() {
    let pki = TestPki::new();
    let url = echo_server(Some(pki.server_mtls.clone()), None).await;
    let (mut ws, _) = ClientBuilder::new(url.as_str())
        .add_root_certificates_pem(pki.ca_pem.as_bytes())
        .unwrap()
        .client_certificate_pem(
            pki.client_cert_pem.as_bytes(),
            pki.client_key_pem.as_bytes(),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    ws.send("mutual").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("mutual"));
    // Without the certificate the server ends the TLS session.
    let refused = async {
        let (mut ws, _) = ClientBuilder::new(url.as_str())
            .add_root_certificates_pem(pki.ca_pem.as_bytes())?
            .connect()
            .await?;
        ws.send("x").await?;
        match ws.recv().await {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e),
            None => Err(volley::Error::Io(std::io::ErrorKind::UnexpectedEof.into())),
        }
    };
    assert!(refused.await.is_err());
    // The CLI: --cert/--key/--cacert, and -k without the CA.
    let dir = services::temp_dir("mtls");
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (ca, cert, key) = (
        write("ca.pem", &pki.ca_pem),
        write("client.pem", &pki.client_cert_pem),
        write("client-key.pem", &pki.client_key_pem),
    );
    let (code, stderr) = cli(&[&url, "--cacert", &ca, "--cert", &cert, "--key", &key]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let (code, stderr) = cli(&[&url, "-k", "--cert", &cert, "--key", &key]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let (code, stderr) = cli(&[&url, "--cert", &cert, "--key", &key]);
    assert_eq!(code, 3, "an unknown CA must fail; stderr: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_refusing_the_port_reports_the_status() {
    if !require("tinyproxy") {
        return;
    }
    let ws_url = echo_server(None, None).await;
    // CONNECT only to port 443: the echo server's port is refused.
    let strict = tinyproxy(None, &[443]);
    let proxy = format!("http://{}", strict.addr);
    match round_trip(&ws_url, &proxy, "").await {
        Err(volley::Error::Proxy(ProxyError::ConnectRefused { status, .. })) => {
            assert_eq!(status, 403)
        }
        other => panic!("expected ConnectRefused, got {other:?}"),
    }
    let (code, stderr) = cli(&[&ws_url, "--proxy", &proxy]);
    assert_eq!(code, 5, "stderr: {stderr}");
    assert!(stderr.contains("403"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_proxy_with_and_without_auth() {
    if !require("microsocks") {
        return;
    }
    let pki = TestPki::new();
    let ws_url = echo_server(None, None).await;
    let wss_url = echo_server(Some(pki.server.clone()), None).await;

    let open = microsocks(None);
    for scheme in ["socks5", "socks5h"] {
        let proxy = format!("{scheme}://{}", open.addr);
        round_trip(&ws_url, &proxy, &pki.ca_pem).await.unwrap();
        round_trip(&wss_url, &proxy, &pki.ca_pem).await.unwrap();
    }
    // socks5h: the proxy resolves the name (the certificate covers
    // localhost too).
    let by_name = wss_url.replace("127.0.0.1", "localhost");
    round_trip(&by_name, &format!("socks5h://{}", open.addr), &pki.ca_pem)
        .await
        .unwrap();

    let guarded = microsocks(Some(("bob", "hunter2")));
    let good = format!("socks5h://bob:hunter2@{}", guarded.addr);
    round_trip(&ws_url, &good, &pki.ca_pem).await.unwrap();
    round_trip(&wss_url, &good, &pki.ca_pem).await.unwrap();
    for bad in [
        format!("socks5://bob:wrong@{}", guarded.addr),
        format!("socks5://{}", guarded.addr),
    ] {
        match round_trip(&ws_url, &bad, &pki.ca_pem).await {
            Err(volley::Error::Proxy(ProxyError::AuthFailed { .. })) => {}
            other => panic!("expected AuthFailed through {bad}, got {other:?}"),
        }
    }
    let bad = format!("socks5://bob:wrong@{}", guarded.addr);
    let (code, stderr) = cli(&[&ws_url, "--proxy", &bad]);
    assert_eq!(code, 6, "stderr: {stderr}");
    let good_cli = format!("socks5://{}", guarded.addr);
    let (code, stderr) = cli(&[&ws_url, "-x", &good_cli, "--proxy-user", "bob:hunter2"]);
    assert_eq!(code, 0, "stderr: {stderr}");
}

#[tokio::test]
async fn unreachable_and_silent_proxies() {
    let echo = EchoProcess::start();
    // Nothing listens on a port just released.
    let port = services::free_port();
    let proxy = format!("http://127.0.0.1:{port}");
    match round_trip(&echo.url, &proxy, "").await {
        Err(volley::Error::Proxy(ProxyError::Unreachable { .. })) => {}
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let (code, stderr) = cli(&[&echo.url, "--proxy", &proxy]);
    assert_eq!(code, 5, "stderr: {stderr}");

    // A proxy that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    for scheme in ["http", "socks5"] {
        let result = ClientBuilder::new(echo.url.as_str())
            .proxy(Proxy::parse(&format!("{scheme}://{addr}")).unwrap())
            .connect_timeout(Duration::from_millis(300))
            .connect()
            .await;
        match result {
            Err(volley::Error::Proxy(ProxyError::Timeout { .. })) => {}
            other => panic!("expected Timeout via {scheme}, got {:?}", other.map(|_| ())),
        }
    }
    held.abort();
}

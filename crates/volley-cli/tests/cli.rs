//! The `volley` binary as a newcomer meets it: Ctrl-C during a drain, the
//! `--listen` forms, logs in a pipe, which keys are printed, and errors that
//! name what failed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Volley;
use volley::ClientBuilder;

/// Opens a `volley.v1` WebSocket on the hub at `addr` and keeps it.
async fn hub_client(addr: &str) -> volley::WebSocket<volley::MaybeTlsStream> {
    let (ws, _) = ClientBuilder::new(format!("ws://{addr}/connection/websocket"))
        .protocol("volley.v1")
        .connect()
        .await
        .expect("connect to the hub");
    ws
}

#[tokio::test]
async fn ctrl_c_says_what_the_drain_does_and_a_second_exits_at_once() {
    let mut serve = Volley::start(&["serve", "--listen", "127.0.0.1:0"], &[]);
    let addr = serve.listening();
    // A client that never leaves by itself: without the second Ctrl-C the
    // drain would last the whole 30 s grace period.
    let _client = hub_client(&addr).await;
    serve.signal("INT");
    let said = serve.stderr_until("draining 1 connection", Duration::from_secs(10));
    assert!(said.contains("30.0 s"), "the grace period is named: {said}");
    assert!(
        said.contains("Ctrl-C again"),
        "the way out is named: {said}"
    );
    serve.signal("INT");
    let status = serve
        .exit_within(Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!(
                "still running 5 s after a second SIGINT: {:#?}",
                serve.drain_stderr()
            )
        });
    assert!(
        !status.success(),
        "an interrupted drain is not a clean exit"
    );
    let stderr = serve.drain_stderr().join("\n");
    assert!(stderr.contains("1 connection dropped"), "{stderr}");
    // Logs written to a pipe carry no colour codes.
    assert!(
        stderr.contains(" INFO "),
        "a log line was written: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escapes in piped logs: {stderr:?}"
    );
}

#[tokio::test]
async fn the_drain_says_when_it_finishes() {
    let mut serve = Volley::start(&["serve", "--listen", ":0"], &[]);
    let addr = serve.listening();
    assert!(
        addr.starts_with("127.0.0.1:"),
        ":0 listens on the loopback: {addr}"
    );
    let client = hub_client(&addr).await;
    serve.signal("TERM");
    serve.stderr_until("draining 1 connection", Duration::from_secs(10));
    drop(client);
    serve.stderr_until("drain finished after", Duration::from_secs(10));
    let status = serve.exit_within(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}");
}

#[test]
fn listen_takes_a_name_and_a_bare_port() {
    let mut echo = Volley::start(&["echo", "--listen", "localhost:0"], &[]);
    let addr = echo.listening();
    let ip: std::net::SocketAddr = addr.parse().unwrap();
    assert!(ip.ip().is_loopback(), "{addr}");
    let mut serve = Volley::start(&["serve", "--listen", "0"], &[]);
    assert!(serve.listening().starts_with("127.0.0.1:"));
    let mut bad = Volley::start(&["serve", "--listen", "localhost"], &[]);
    let status = bad.exit_within(Duration::from_secs(10)).expect("exited");
    assert!(!status.success());
    let said = bad.drain_stderr().join("\n");
    assert!(said.contains("host:port, :port or port"), "{said}");
}

#[test]
fn configured_keys_are_not_printed_generated_ones_are() {
    let dir = std::env::temp_dir().join(format!("volley-cli-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("volley.toml");
    std::fs::write(
        &config,
        "demo = true\nallow_anonymous = true\napi_key = \"file-api-key-0123456789\"\n\
         admin_key = \"file-admin-key-0123456789\"\n[auth]\nhmac_secret = \"0123456789abcdef0123\"\n",
    )
    .unwrap();
    let mut serve = Volley::start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    serve.listening();
    serve.stdout_until("metrics:");
    let printed = serve.stdout_seen.join("\n");
    assert!(!printed.contains("file-api-key"), "{printed}");
    assert!(!printed.contains("file-admin-key"), "{printed}");
    assert!(
        printed.contains("/admin "),
        "the admin page is still named: {printed}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    let mut demo = Volley::start(&["serve", "--listen", "127.0.0.1:0"], &[]);
    demo.listening();
    demo.stdout_until("metrics:");
    let printed = demo.stdout_seen.join("\n");
    assert!(printed.contains("/admin#key="), "{printed}");
    assert!(printed.contains("apikey "), "{printed}");
}

#[test]
fn echo_on_a_busy_port_names_the_address() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let mut echo = Volley::start(&["echo", "--listen", &addr], &[]);
    let status = echo.exit_within(Duration::from_secs(10)).expect("exited");
    assert!(!status.success());
    let said = echo.drain_stderr().join("\n");
    assert!(said.contains(&format!("cannot listen on {addr}")), "{said}");
}

#[test]
fn bench_names_the_url_and_shows_the_refusal() {
    let mut serve = Volley::start(&["serve", "--listen", "127.0.0.1:0"], &[]);
    let addr = serve.listening();
    // The hub refuses a handshake without the volley.v1 subprotocol with 400
    // and a body that says so; both raw-engine paths must show it.
    let url = format!("ws://{addr}/connection/websocket");
    for mode in [
        &["latency", "-d", "0.2", "--warmup", "0"][..],
        &["echo", "-c", "1", "-d", "0.2", "--warmup", "0"][..],
    ] {
        let mut args = vec!["bench", mode[0], "--url", &url];
        args.extend_from_slice(&mode[1..]);
        let mut bench = Volley::start(&args, &[]);
        let status = bench
            .exit_within(Duration::from_secs(30))
            .expect("bench exited");
        assert!(!status.success());
        let said = bench.drain_stderr().join("\n");
        assert!(
            said.contains(&format!("bench against {url}: ")),
            "{mode:?}: {said}"
        );
        assert!(
            said.contains("server answered 400 Bad Request"),
            "{mode:?}: {said}"
        );
        assert!(
            said.contains("offer the WebSocket subprotocol volley.v1"),
            "{mode:?}: {said}"
        );
        assert!(
            !said.contains("data before the first message"),
            "{mode:?}: {said}"
        );
    }
}

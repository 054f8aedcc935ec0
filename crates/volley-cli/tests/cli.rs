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

/// Messages and a Close that arrive together are all answered: every echo
/// goes out before the Close reply.
#[test]
fn echo_answers_messages_that_arrive_with_the_close() {
    use std::io::{Read, Write};

    let mut echo = Volley::start(&["echo", "--listen", "127.0.0.1:0"], &[]);
    let addr = echo.listening();
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).unwrap();
        response.push(byte[0]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    // Masked frames with the all-zero key, so the payloads read as sent: 300
    // text messages, small ones and ones large enough to be queued by
    // reference, and a Close (1000), in one write.
    let sent: Vec<(u8, Vec<u8>)> = (0..300)
        .map(|i| {
            let width = if i % 3 == 0 { 6000 } else { 100 };
            (0x81u8, format!("message {i:>width$}").into_bytes())
        })
        .chain([(0x88, vec![0x03, 0xe8])])
        .collect();
    let mut burst = Vec::new();
    for (opcode, payload) in &sent {
        match u16::try_from(payload.len()) {
            Ok(len @ 0..=125) => burst.extend_from_slice(&[*opcode, 0x80 | len as u8]),
            Ok(len) => {
                burst.extend_from_slice(&[*opcode, 0x80 | 126]);
                burst.extend_from_slice(&len.to_be_bytes());
            }
            Err(_) => unreachable!("payloads are small"),
        }
        burst.extend_from_slice(&[0, 0, 0, 0]);
        burst.extend_from_slice(payload);
    }
    tcp.write_all(&burst).unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).unwrap();
    let mut frames = Vec::new();
    let mut rest = &answer[..];
    while let [opcode, len, tail @ ..] = rest {
        let (len, tail) = match *len {
            126 => (
                usize::from(u16::from_be_bytes([tail[0], tail[1]])),
                &tail[2..],
            ),
            len => (usize::from(len), tail),
        };
        assert!(tail.len() >= len, "truncated frame in {answer:?}");
        frames.push((*opcode, tail[..len].to_vec()));
        rest = &tail[len..];
    }
    assert_eq!(frames.len(), sent.len(), "frames answered");
    assert!(frames == sent, "the echoes and the Close reply, in order");
}

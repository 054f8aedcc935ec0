//! `volley connect`, `volley replay`, `volley subscribe` and `volley
//! publish`, black box: the interactive mode through a pseudo-terminal, the
//! pipe mode through pipes, record and replay against `volley echo`, and a
//! subscriber that lives through the hub disconnecting it and restarting.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::services::{EchoProcess, Hub, echo_server, temp_dir, volley_bin};
use expectrl::Expect as _;

/// `volley ARGS` with piped stdin and stdout; stderr kept in a file.
fn spawn(args: &[&str]) -> Child {
    Command::new(volley_bin())
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Lines of `child`'s stdout, as they come.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (bounded) for the exit code.
fn exit_code(child: &mut Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("volley did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn next_line(lines: &mpsc::Receiver<String>, what: &str) -> String {
    lines
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("no line for {what} within 20 s"))
}

#[test]
fn pipe_mode_echoes_a_thousand_lines_in_order_byte_exact() {
    let echo = EchoProcess::start();
    let mut child = spawn(&["connect", &echo.url]);
    let lines = stdout_lines(&mut child);
    let sent: Vec<String> = (0..1000)
        .map(|i| match i % 4 {
            0 => format!("line {i}"),
            1 => format!("{{\"n\":{i},\"text\":\"h\u{e9}llo \u{1f30d}\"}}"),
            2 => format!("  {i} with  spaces and a tab\there  "),
            _ => "x".repeat(i % 300 + 1),
        })
        .collect();
    let mut stdin = child.stdin.take().unwrap();
    let writer = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            for line in &sent {
                stdin.write_all(line.as_bytes()).unwrap();
                stdin.write_all(b"\n").unwrap();
            }
            stdin
        })
    };
    let mut received = Vec::new();
    for i in 0..sent.len() {
        received.push(next_line(&lines, &format!("echo {i}")));
    }
    // Input ends only now: the close cannot race the echoes.
    drop(writer.join().unwrap());
    assert_eq!(received, sent);
    assert_eq!(exit_code(&mut child, Duration::from_secs(20)), 0);
    assert!(
        lines.recv_timeout(Duration::from_secs(5)).is_err(),
        "an extra line"
    );
}

#[test]
fn pipe_mode_binary_round_trip_through_base64_and_hex() {
    let echo = EchoProcess::start();
    let payloads: Vec<Vec<u8>> = (0..50u32)
        .map(|i| (0..(i * 7 + 1)).map(|b| (b * 31 + i) as u8).collect())
        .collect();
    for (flag, encode) in [
        (
            "base64",
            (|b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b)) as fn(&[u8]) -> String,
        ),
        ("hex", |b: &[u8]| {
            b.iter().map(|x| format!("{x:02x}")).collect()
        }),
    ] {
        let mut child = spawn(&["connect", &echo.url, "--binary", "--encoding", flag]);
        let lines = stdout_lines(&mut child);
        let mut stdin = child.stdin.take().unwrap();
        for p in &payloads {
            writeln!(stdin, "{}", encode(p)).unwrap();
        }
        for (i, p) in payloads.iter().enumerate() {
            assert_eq!(next_line(&lines, &format!("{flag} echo {i}")), encode(p));
        }
        drop(stdin);
        assert_eq!(exit_code(&mut child, Duration::from_secs(20)), 0);
    }
}

#[test]
fn interactive_mode_in_a_pseudo_terminal() {
    let echo = EchoProcess::start();
    let mut command = Command::new(volley_bin());
    command.args(["connect", &echo.url]);
    let mut session = expectrl::Session::spawn(command).unwrap();
    session.set_expect_timeout(Some(Duration::from_secs(20)));
    session.expect("* connected").unwrap();
    session.send_line("hello from the terminal").unwrap();
    // The echo, above the prompt, with a timestamp and the marker.
    session
        .expect(expectrl::Regex(
            r"\d\d:\d\d:\d\d\.\d\d\d < hello from the terminal",
        ))
        .unwrap();
    session.send_line("/binary 68 69").unwrap();
    session.expect("< [binary 2 B] aGk=").unwrap();
    session.send_line("/ping are you there").unwrap();
    session
        .expect(expectrl::Regex(r"< pong \(\d+\.\d ms\)"))
        .unwrap();
    session.send_line("/help").unwrap();
    session.expect("/close [CODE [REASON]]").unwrap();
    session.send_line("/close 4000 done here").unwrap();
    session.expect("* closed 4000 done here").unwrap();
    let status = session.get_process().wait().unwrap();
    assert!(
        matches!(status, expectrl::process::unix::WaitStatus::Exited(_, 0)),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_then_replay_against_echo_and_a_different_server() {
    let echo = EchoProcess::start();
    let dir = temp_dir("replay");
    let record = dir.join("session.jsonl");
    let record_arg = record.to_str().unwrap().to_owned();
    let url = echo.url.clone();
    tokio::task::spawn_blocking(move || {
        let mut child = spawn(&["connect", &url, "--record", &record_arg]);
        let lines = stdout_lines(&mut child);
        let mut stdin = child.stdin.take().unwrap();
        for m in ["first", "second", "{\"op\":\"sub\"}"] {
            writeln!(stdin, "{m}").unwrap();
            assert_eq!(next_line(&lines, m), m);
        }
        drop(stdin);
        assert_eq!(exit_code(&mut child, Duration::from_secs(20)), 0);
    })
    .await
    .unwrap();
    let text = std::fs::read_to_string(&record).unwrap();
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |dir: &str| {
        entries
            .iter()
            .filter(|e| e["dir"] == dir && e["opcode"] == "text")
            .count()
    };
    assert_eq!((count("out"), count("in")), (3, 3), "{text}");
    assert!(
        entries
            .iter()
            .any(|e| e["opcode"] == "close" && e["code"] == 1000)
    );
    assert!(
        entries
            .windows(2)
            .all(|w| w[0]["t"].as_f64() <= w[1]["t"].as_f64())
    );

    let replay = |url: String| {
        let record = record.clone();
        tokio::task::spawn_blocking(move || {
            let out = Command::new(volley_bin())
                .args(["replay", record.to_str().unwrap(), &url, "--speed", "4"])
                .output()
                .unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        })
    };
    let (code, stdout) = replay(echo.url.clone()).await.unwrap();
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("no difference"), "{stdout}");

    let upper = echo_server(
        None,
        Some(|m| match m {
            volley::Message::Text(t) => volley::Message::text(t.as_str().to_uppercase()),
            other => other,
        }),
    )
    .await;
    let (code, stdout) = replay(upper).await.unwrap();
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("reply 1: expected text \"first\", got text \"FIRST\""),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_says_so_on_stderr_and_in_the_record() {
    // A server that closes every connection at once with 1012 (restart).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut ws) = volley::accept(tcp).await {
                    let _ = ws.close(volley::CloseCode::from(1012), "restarting").await;
                    while let Some(Ok(_)) = ws.recv().await {}
                }
            });
        }
    });
    let dir = temp_dir("reconnect");
    let record = dir.join("r.jsonl");
    let record_arg = record.to_str().unwrap().to_owned();
    let code = tokio::task::spawn_blocking(move || {
        let mut child = spawn(&["connect", &url, "--reconnect", "--record", &record_arg]);
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut reconnects = 0;
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("reconnecting (attempt") {
                reconnects += 1;
                if reconnects == 3 {
                    break;
                }
            }
        }
        assert_eq!(reconnects, 3);
        drop(child.stdin.take());
        exit_code(&mut child, Duration::from_secs(40))
    })
    .await
    .unwrap();
    // The input ended while waiting to reconnect: the session ends as the
    // last connection did (closed by the server with 1012).
    assert_eq!(code, 7);
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    let text = std::fs::read_to_string(&record).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["dir"] == "event")
        .collect();
    let count = |name: &str| events.iter().filter(|e| e["event"] == name).count();
    assert!(count("reconnecting") >= 3, "{text}");
    assert!(count("connected") >= 3, "{text}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "closed" && e["code"] == 1012),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

const HUB_KEY: &str = "connect-test-key";

fn hub_config() -> String {
    format!(
        "api_key = \"{HUB_KEY}\"\nallow_anonymous = true\n\n[namespaces.feed]\nhistory_size = 100\nhistory_ttl = 600\nallow_anonymous = true\n"
    )
}

/// `volley publish`: the result it prints (`{"epoch","offset"}`).
fn publish(addr: &str, channel: &str, data: &str) -> serde_json::Value {
    let url = format!("http://{addr}");
    let out = Command::new(volley_bin())
        .args(["publish", &url, channel, data, "--api-key", HUB_KEY])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn subscribe_since_a_position_and_publish_errors() {
    let hub = Hub::start(&hub_config());
    let addr = hub.addr.clone();
    let first = publish(&addr, "feed:b", "{\"n\":1}");
    assert_eq!(first["offset"], 1, "{first}");
    for n in 2..=4 {
        publish(&addr, "feed:b", &format!("{{\"n\":{n}}}"));
    }
    let since = format!("{}:2", first["epoch"].as_str().unwrap());
    let url = format!("ws://{addr}");
    let mut child = spawn(&["subscribe", &url, "feed:b", "--since", &since]);
    let lines = stdout_lines(&mut child);
    for n in 3..=4 {
        let v: serde_json::Value = serde_json::from_str(&next_line(&lines, "recovered")).unwrap();
        assert_eq!(
            (v["data"]["n"].as_u64(), v["offset"].as_u64()),
            (Some(n), Some(n))
        );
    }
    publish(&addr, "feed:b", "{\"n\":5}");
    let v: serde_json::Value = serde_json::from_str(&next_line(&lines, "live")).unwrap();
    assert_eq!(v["offset"], 5);
    let _ = child.kill();
    let _ = child.wait();
    // The hub refuses an upgrade without the volley.v1 subprotocol (400):
    // exit 4; nothing listening: exit 3.
    let refused = Command::new(volley_bin())
        .args([
            "connect",
            &format!("ws://{addr}/connection/websocket"),
            "--no-env-proxy",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("400"));
    let port = common::services::free_port();
    let nobody = Command::new(volley_bin())
        .args([
            "connect",
            &format!("ws://127.0.0.1:{port}/"),
            "--no-env-proxy",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(3));
    // A wrong API key: the hub's answer, exit 1.
    let out = Command::new(volley_bin())
        .args([
            "publish",
            &format!("http://{addr}"),
            "feed:b",
            "1",
            "--api-key",
            "wrong",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

// The HTTP API client of `volley bench fanout` and the chaos test.
#[allow(dead_code)]
#[path = "../src/http_api.rs"]
mod http_api;

fn api(addr: &str, method: &str, body: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, body) = runtime
        .block_on(http_api::HttpApi::new(addr, HUB_KEY).post(method, body))
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    String::from_utf8_lossy(&body).into_owned()
}

#[test]
fn subscribe_survives_disconnects_and_a_hub_restart() {
    let mut hub = Hub::start(&hub_config());
    let addr = hub.addr.clone();
    let mut child = spawn(&["subscribe", &format!("ws://{addr}"), "feed:a"]);
    let lines = stdout_lines(&mut child);
    let stderr = child.stderr.take().unwrap();
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send(line);
        }
    });
    let wait_subscribed = |what: &str| loop {
        let line = err_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("not subscribed ({what}) within 30 s"));
        if line.contains("subscribed to feed:a") {
            return line;
        }
    };
    wait_subscribed("first");
    let mut got = Vec::new();
    let mut take = |n: usize, what: &str| {
        for _ in 0..n {
            let line = next_line(&lines, what);
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            got.push(v);
        }
    };
    for i in 1..=5 {
        publish(&addr, "feed:a", &format!("{{\"n\":{i}}}"));
    }
    take(5, "publications 1-5");
    // The hub drops every connection (4000, reconnect); publications go on
    // meanwhile and must be recovered.
    let answer = api(&addr, "disconnect", "{\"user\":\"\"}");
    assert!(answer.contains("\"disconnected\":1"), "{answer}");
    for i in 6..=10 {
        publish(&addr, "feed:a", &format!("{{\"n\":{i}}}"));
    }
    take(5, "publications 6-10");
    let resubscribed = wait_subscribed("after the disconnect");
    assert!(resubscribed.contains("(recovered)"), "{resubscribed}");

    // Restart the hub on the same port: a new epoch, recovery impossible,
    // the subscriber says so and carries on.
    let _ = hub.child.kill();
    let _ = hub.child.wait();
    let config = hub_config();
    let restarted = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // The port may linger a moment after the kill.
            let attempt = std::panic::catch_unwind(|| Hub::start_on(&config, &addr));
            match attempt {
                Ok(h) => break h,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    };
    drop(hub);
    let after = wait_subscribed("after the restart");
    assert!(after.contains("NOT recovered"), "{after}");
    for i in 11..=13 {
        publish(&addr, "feed:a", &format!("{{\"n\":{i}}}"));
    }
    take(3, "publications 11-13");
    let numbers: Vec<u64> = got
        .iter()
        .map(|v| v["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=13).collect::<Vec<_>>(), "{got:?}");
    let offsets: Vec<u64> = got.iter().map(|v| v["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2, 3]);
    assert!(
        lines.recv_timeout(Duration::from_millis(500)).is_err(),
        "a duplicate"
    );
    let _ = child.kill();
    let _ = child.wait();
    drop(restarted);
}

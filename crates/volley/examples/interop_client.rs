//! Interop check of the volley client against any echo server (CI runs it
//! against Node's `ws`): `interop_client URL [--expect-deflate]`.
//! Prints one line per check and `N passed, M failed`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples fail loudly

use std::time::Duration;

use volley::{ClientBuilder, CloseCode, Message, WebSocketConfig};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ws://127.0.0.1:8080/".into());
    let expect_deflate = args.any(|a| a == "--expect-deflate");
    let (mut passed, mut failed) = (0, 0);
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        run(&url, expect_deflate, &mut passed, &mut failed),
    )
    .await;
    if outcome.is_err() {
        println!("FAIL  timed out after 60 s");
        failed += 1;
    }
    println!("{passed} passed, {failed} failed");
    std::process::exit(if failed == 0 && passed > 0 { 0 } else { 1 });
}

fn check(name: &str, ok: bool, detail: String, passed: &mut u32, failed: &mut u32) {
    if ok {
        *passed += 1;
        println!("ok    {name}");
    } else {
        *failed += 1;
        println!("FAIL  {name}: {detail}");
    }
}

async fn run(url: &str, expect_deflate: bool, passed: &mut u32, failed: &mut u32) {
    let config = WebSocketConfig::builder()
        .keepalive(Duration::from_millis(100), Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let (mut ws, response) = match ClientBuilder::new(url).config(config).connect().await {
        Ok(ok) => ok,
        Err(e) => return check("connect", false, e.to_string(), passed, failed),
    };
    check("connect", true, String::new(), passed, failed);
    let extensions = response
        .headers()
        .get("sec-websocket-extensions")
        .map(|v| v.to_str().unwrap_or("?").to_owned());
    println!(
        "      permessage-deflate: {} ({extensions:?})",
        ws.is_compressed()
    );
    if expect_deflate {
        check(
            "permessage-deflate negotiated",
            ws.is_compressed(),
            format!("{extensions:?}"),
            passed,
            failed,
        );
    }

    let big: Vec<u8> = (0..16u32 << 20).map(|i| (i % 253) as u8).collect();
    let cases: Vec<(&str, Message)> = vec![
        ("text", Message::text("héllo, wörld 🌍")),
        ("binary", Message::binary(vec![0u8, 1, 2, 254, 255])),
        ("16 MiB binary", Message::binary(big)),
    ];
    for (name, message) in cases {
        let result = async {
            ws.send(message.clone()).await?;
            ws.recv().await.unwrap_or(Err(volley::Error::Io(
                std::io::ErrorKind::UnexpectedEof.into(),
            )))
        }
        .await;
        match result {
            Ok(echo) => check(
                name,
                echo == message,
                format!("got {} bytes", echo.len()),
                passed,
                failed,
            ),
            Err(e) => check(name, false, e.to_string(), passed, failed),
        }
    }

    let text = "fragmented ".repeat(1000);
    let result = async {
        ws.send_fragmented(text.as_str(), 1000).await?;
        ws.recv().await.unwrap_or(Err(volley::Error::Io(
            std::io::ErrorKind::UnexpectedEof.into(),
        )))
    }
    .await;
    match result {
        Ok(echo) => check(
            "fragmented",
            echo.as_text() == Some(text.as_str()),
            String::new(),
            passed,
            failed,
        ),
        Err(e) => check("fragmented", false, e.to_string(), passed, failed),
    }

    // Keepalive pings every 100 ms; reading drives them until a pong came
    // back. `None` is the end of the stream (the server closed first): stop
    // there, a closed connection answers every later `recv` at once.
    let pong = tokio::time::timeout(Duration::from_secs(5), async {
        while ws.rtt().is_none() {
            match tokio::time::timeout(Duration::from_millis(50), ws.recv()).await {
                Ok(None) => return Err("the server closed the connection".to_owned()),
                Ok(Some(Err(e))) => return Err(e.to_string()),
                Ok(Some(Ok(_))) | Err(_) => {}
            }
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|_| Err("no pong in 5 s".into()));
    let closed = matches!(&pong, Err(e) if e.starts_with("the server closed"));
    check(
        "ping answered by pong",
        pong.is_ok(),
        pong.err().unwrap_or_default(),
        passed,
        failed,
    );
    if closed {
        return;
    }

    match ws.close(CloseCode(4000), "bye").await {
        Ok(()) => {
            let frame = ws.close_frame().map(|f| (f.code, f.reason.to_string()));
            check(
                "close 4000 bye",
                frame == Some((CloseCode(4000), "bye".into())),
                format!("{frame:?}"),
                passed,
                failed,
            );
        }
        Err(e) => check("close 4000 bye", false, e.to_string(), passed, failed),
    }
}

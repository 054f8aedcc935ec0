//! `volley replay FILE URL`: sends the client messages of a `--record` with
//! their recorded timing and reports where the server's replies differ, so
//! a captured session becomes a regression test.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use volley::{CloseCode, Message};

use super::exit::Ending;
use super::options::{ClientArgs, parse_duration};
use super::record::{self, Entry};

/// Arguments of `volley replay`.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// A record written by `volley connect --record`.
    /// Example: session.jsonl
    pub(crate) file: PathBuf,
    /// The server to replay against. Example: ws://127.0.0.1:9001/
    pub(crate) url: String,
    /// Plays the timing N times faster (0 sends everything at once).
    /// Example: --speed 10
    #[arg(long, default_value_t = 1.0)]
    pub(crate) speed: f64,
    /// How long to wait for the remaining replies after the last message.
    /// Example: --wait 2s
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub(crate) wait: Duration,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

/// A message and when, in seconds since the start.
type Timed = (f64, Message);

fn describe(message: &Message) -> String {
    match message {
        Message::Text(t) => format!("text {:?}", t.as_str()),
        Message::Binary(b) => format!("binary {} B {}", b.len(), hex::encode(b)),
    }
}

/// The differences between the expected and the received replies, one line
/// each (empty: none).
pub(crate) fn differences(expected: &[Message], received: &[Message]) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..expected.len().max(received.len()) {
        match (expected.get(i), received.get(i)) {
            (Some(e), Some(r)) if e == r => {}
            (Some(e), Some(r)) => out.push(format!(
                "reply {}: expected {}, got {}",
                i + 1,
                describe(e),
                describe(r)
            )),
            (Some(e), None) => out.push(format!(
                "reply {}: expected {}, got nothing",
                i + 1,
                describe(e)
            )),
            (None, Some(r)) => out.push(format!("reply {}: unexpected {}", i + 1, describe(r))),
            (None, None) => {}
        }
    }
    out
}

/// Runs `volley replay`.
pub(crate) async fn run(args: ReplayArgs) -> Ending {
    let entries = match record::read(&args.file) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("volley: {e}");
            return Ending::Failure;
        }
    };
    let pick = |dir: &str| -> Vec<Timed> {
        entries
            .iter()
            .filter(|e: &&Entry| e.dir == dir)
            .filter_map(|e| e.to_message().map(|m| (e.t, m)))
            .collect()
    };
    let to_send = pick("out");
    let expected: Vec<Message> = pick("in").into_iter().map(|(_, m)| m).collect();
    let builder = match args.client.builder(&args.url, &[]) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("volley: {e}");
            return Ending::Failure;
        }
    };
    let (mut ws, _) = match builder.connect().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("volley: {e}");
            return Ending::of_connect_error(&e);
        }
    };
    let start = tokio::time::Instant::now();
    let first = to_send.first().map_or(0.0, |(t, _)| *t);
    let mut received = Vec::new();
    let mut lost = None;
    let mut next = 0;
    // Send on schedule while reading; then read until every expected reply
    // is in, or --wait passes without one.
    loop {
        let due = to_send.get(next).map(|(t, _)| {
            let offset = if args.speed > 0.0 {
                (t - first).max(0.0) / args.speed
            } else {
                0.0
            };
            start + Duration::from_secs_f64(offset)
        });
        let deadline = due.unwrap_or_else(|| tokio::time::Instant::now() + args.wait);
        if due.is_none() && received.len() >= expected.len() {
            break;
        }
        tokio::select! {
            got = ws.recv() => match got {
                Some(Ok(m)) => received.push(m),
                Some(Err(e)) => { lost = Some(e.to_string()); break; }
                None => { lost = Some("the server closed the connection".into()); break; }
            },
            () = tokio::time::sleep_until(deadline) => {
                match to_send.get(next) {
                    Some((_, message)) => {
                        if let Err(e) = ws.send(message.clone()).await {
                            lost = Some(e.to_string());
                            break;
                        }
                        next += 1;
                    }
                    None => break,
                }
            }
        }
    }
    if lost.is_none() {
        let _ = ws.close(CloseCode::from(1000), "").await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(m)) = ws.recv().await {
                received.push(m);
            }
        })
        .await;
    }
    let diffs = differences(&expected, &received);
    println!(
        "replayed {} of {} messages; {} replies expected, {} received",
        next,
        to_send.len(),
        expected.len(),
        received.len()
    );
    if let Some(why) = &lost {
        println!("connection ended early: {why}");
    }
    for d in &diffs {
        println!("{d}");
    }
    if diffs.is_empty() && next == to_send.len() {
        println!("no difference");
        Ending::Normal
    } else {
        Ending::Failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_differences() {
        let a = vec![Message::text("a")];
        let b = vec![Message::text("b")];
        let ab = vec![Message::text("a"), Message::text("b")];
        assert!(differences(&a, &a).is_empty());
        assert_eq!(differences(&a, &b).len(), 1);
        assert_eq!(
            differences(&ab, &a),
            vec!["reply 2: expected text \"b\", got nothing".to_string()]
        );
        assert_eq!(differences(&[], &b).len(), 1);
    }
}

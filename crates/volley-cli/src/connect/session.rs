//! The connection driver shared by the interactive and pipe front ends:
//! connects (and, with `--reconnect`, reconnects with backoff and jitter),
//! sends what the front end asks, hands it what arrives, records both.

use std::time::Duration;

use rand::Rng as _;
use tokio::sync::mpsc;
use volley::{ClientBuilder, CloseCode, MaybeTlsStream, Message, WebSocket};

use super::exit::Ending;
use super::record::{Entry, Recorder};

/// What the front end asks for.
#[derive(Debug, PartialEq)]
pub(crate) enum Input {
    /// Send a message.
    Message(Message),
    /// Send a ping with this payload.
    Ping(Vec<u8>),
    /// Close with this code and reason, then end.
    Close(u16, String),
    /// Ctrl-C: close with 1000 and end with [`Ending::Interrupted`].
    Interrupt,
}

/// What the driver tells the front end.
#[derive(Debug)]
pub(crate) enum Output {
    /// The handshake succeeded.
    Connected {
        /// The request we sent, for `--show-headers`.
        request: String,
        /// The response head, for `--show-headers`.
        response: String,
    },
    /// A message arrived.
    Received(Message),
    /// A message was sent (for `-v`).
    Sent(Message),
    /// A ping was sent (for `-v` and `/ping`).
    PingSent,
    /// A pong arrived: the round trip since our `/ping`, or the keepalive's.
    Pong {
        /// The round-trip time, when known.
        rtt: Option<Duration>,
    },
    /// The connection ended: the peer's close code (None: no close frame)
    /// and reason, or the error.
    Ended {
        /// The close code.
        code: Option<u16>,
        /// The reason, or what went wrong.
        reason: String,
    },
    /// Reconnecting after `delay` (attempt n).
    Reconnecting {
        /// Attempts since the last successful connection.
        attempt: u32,
        /// Backoff before this attempt.
        delay: Duration,
    },
}

/// Reconnection policy: full jitter between 0 and min(cap, base × 2^n).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
}

impl Backoff {
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.cap);
        ceiling.mul_f64(rand::rng().random::<f64>())
    }
}

/// Drives one session until it ends; `reconnect` keeps it going after
/// drops until the input closes it.
pub(crate) async fn drive(
    make: impl Fn() -> ClientBuilder,
    reconnect: Option<Backoff>,
    linger: Duration,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::UnboundedSender<Output>,
    recorder: Recorder,
) -> Ending {
    let mut attempt: u32 = 0;
    let mut ever_connected = false;
    loop {
        let (ws, response) = match make().connect().await {
            Ok(c) => c,
            Err(e) => {
                let ending = Ending::of_connect_error(&e);
                recorder.write(Entry::event("connect_failed", None, Some(e.to_string())));
                match reconnect {
                    Some(backoff) if ever_connected => {
                        let _ = output.send(Output::Ended {
                            code: None,
                            reason: e.to_string(),
                        });
                        attempt += 1;
                        if let Some(end) =
                            wait_backoff(&backoff, attempt, &mut input, &output, &recorder).await
                        {
                            return end.unwrap_or(ending);
                        }
                        continue;
                    }
                    _ => {
                        let _ = output.send(Output::Ended {
                            code: None,
                            reason: e.to_string(),
                        });
                        return ending;
                    }
                }
            }
        };
        ever_connected = true;
        attempt = 0;
        recorder.write(Entry::event("connected", None, None));
        let request = response
            .extensions()
            .get::<volley::SentRequest>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .unwrap_or_default();
        let _ = output.send(Output::Connected {
            request,
            response: describe_response(&response),
        });
        match run(ws, &mut input, linger, &output, &recorder).await {
            Run::Finished(ending) => return ending,
            Run::Lost { code, reason } => {
                let _ = output.send(Output::Ended {
                    code,
                    reason: reason.clone(),
                });
                let ending = Ending::of_close(code);
                recorder.write(Entry::event(
                    if code.is_some() { "closed" } else { "dropped" },
                    code,
                    (!reason.is_empty()).then_some(reason),
                ));
                let Some(backoff) = reconnect else {
                    return ending;
                };
                if let Some(end) =
                    wait_backoff(&backoff, attempt, &mut input, &output, &recorder).await
                {
                    return end.unwrap_or(ending);
                }
            }
        }
    }
}

/// Waits out the backoff. Some when the input asked to stop meanwhile: with
/// the ending it asked for (`/close`: normal, Ctrl-C: interrupted), or None
/// when the input ended (the session ends as the last connection did).
async fn wait_backoff(
    backoff: &Backoff,
    attempt: u32,
    input: &mut mpsc::Receiver<Input>,
    output: &mpsc::UnboundedSender<Output>,
    recorder: &Recorder,
) -> Option<Option<Ending>> {
    let delay = backoff.delay(attempt);
    recorder.write(Entry::event(
        "reconnecting",
        None,
        Some(format!(
            "attempt {} after {} ms",
            attempt + 1,
            delay.as_millis()
        )),
    ));
    let _ = output.send(Output::Reconnecting {
        attempt: attempt + 1,
        delay,
    });
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return None,
            next = input.recv() => match next {
                None => return Some(None),
                Some(Input::Close(..)) => return Some(Some(Ending::Normal)),
                Some(Input::Interrupt) => return Some(Some(Ending::Interrupted)),
                // Messages typed while disconnected are dropped, and said so.
                Some(_) => {}
            },
        }
    }
}

enum Run {
    /// The front end ended the session.
    Finished(Ending),
    /// The server closed or the connection dropped.
    Lost { code: Option<u16>, reason: String },
}

async fn run(
    mut ws: WebSocket<MaybeTlsStream>,
    input: &mut mpsc::Receiver<Input>,
    linger: Duration,
    output: &mpsc::UnboundedSender<Output>,
    recorder: &Recorder,
) -> Run {
    // Set once the input has ended: close when the server has been quiet
    // for `linger`.
    let mut quiet_until: Option<tokio::time::Instant> = None;
    // Pongs are handled inside recv and never returned: their count is
    // looked at 10 times a second while a /ping waits for its pong or
    // keepalive pings are on.
    let keepalive = ws.config().keepalive().is_some();
    let mut pongs = ws.pongs_received();
    let mut ping_sent: Option<std::time::Instant> = None;
    let mut pong_check = tokio::time::interval(Duration::from_millis(100));
    pong_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if let Some(deadline) = quiet_until {
            if tokio::time::Instant::now() >= deadline {
                return Run::Finished(close(ws, 1000, "", None, output, recorder).await);
            }
        }
        tokio::select! {
            () = sleep_until(quiet_until) => continue,
            _ = pong_check.tick(), if keepalive || ping_sent.is_some() => {
                let now = ws.pongs_received();
                if now != pongs {
                    pongs = now;
                    let rtt = ping_sent.take().map(|t| t.elapsed()).or_else(|| ws.rtt());
                    recorder.write(Entry::pong());
                    let _ = output.send(Output::Pong { rtt });
                }
            },
            received = ws.recv() => match received {
                Some(Ok(message)) => {
                    recorder.write(Entry::message("in", &message));
                    let _ = output.send(Output::Received(message));
                    if quiet_until.is_some() {
                        quiet_until = Some(tokio::time::Instant::now() + linger);
                    }
                }
                Some(Err(e)) => {
                    return Run::Lost { code: None, reason: e.to_string() };
                }
                None => {
                    let (code, reason) = close_of(&ws);
                    recorder.write(Entry::close("in", code.unwrap_or(1005), &reason));
                    return Run::Lost { code, reason };
                }
            },
            next = input.recv(), if quiet_until.is_none() => {
                let (code, reason, ending) = match next {
                    Some(Input::Message(message)) => {
                        recorder.write(Entry::message("out", &message));
                        let shown = message.clone();
                        if let Err(e) = ws.send(message).await {
                            return Run::Lost { code: None, reason: e.to_string() };
                        }
                        let _ = output.send(Output::Sent(shown));
                        continue;
                    }
                    Some(Input::Ping(payload)) => {
                        recorder.write(Entry::ping(&payload));
                        if let Err(e) = ws.ping(&payload).await {
                            return Run::Lost { code: None, reason: e.to_string() };
                        }
                        ping_sent = Some(std::time::Instant::now());
                        let _ = output.send(Output::PingSent);
                        continue;
                    }
                    Some(Input::Close(code, reason)) => (code, reason, None),
                    Some(Input::Interrupt) => (1000, String::new(), Some(Ending::Interrupted)),
                    None if linger.is_zero() => (1000, String::new(), None),
                    None => {
                        quiet_until = Some(tokio::time::Instant::now() + linger);
                        continue;
                    }
                };
                return Run::Finished(close(ws, code, &reason, ending, output, recorder).await);
            }
        }
    }
}

/// Sleeps until `deadline`; never ready without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Closes with `code` and waits (at most 5 s) for the peer's close, still
/// handing over messages that arrive meanwhile.
async fn close(
    mut ws: WebSocket<MaybeTlsStream>,
    code: u16,
    reason: &str,
    ending: Option<Ending>,
    output: &mpsc::UnboundedSender<Output>,
    recorder: &Recorder,
) -> Ending {
    recorder.write(Entry::close("out", code, reason));
    if let Err(e) = ws.close(CloseCode::from(code), reason).await {
        let _ = output.send(Output::Ended {
            code: None,
            reason: e.to_string(),
        });
        return ending.unwrap_or(Ending::Dropped);
    }
    let drain = async {
        while let Some(received) = ws.recv().await {
            match received {
                Ok(message) => {
                    recorder.write(Entry::message("in", &message));
                    let _ = output.send(Output::Received(message));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    };
    let drained = tokio::time::timeout(Duration::from_secs(5), drain).await;
    let (peer_code, peer_reason) = close_of(&ws);
    let (code, reason) = match drained {
        Ok(Ok(())) => (peer_code, peer_reason),
        Ok(Err(e)) => (None, e),
        Err(_) => (None, "no close frame from the server within 5 s".into()),
    };
    if let Some(c) = code {
        recorder.write(Entry::close("in", c, &reason));
    }
    recorder.write(Entry::event(
        "closed",
        code,
        (!reason.is_empty()).then(|| reason.clone()),
    ));
    let _ = output.send(Output::Ended { code, reason });
    ending.unwrap_or(if code.is_some() {
        Ending::Normal
    } else {
        Ending::Dropped
    })
}

fn close_of(ws: &WebSocket<MaybeTlsStream>) -> (Option<u16>, String) {
    match ws.close_frame() {
        Some(frame) => (Some(u16::from(frame.code)), frame.reason.to_string()),
        None => (Some(1005), String::new()),
    }
}

fn describe_response(response: &volley::http::Response<()>) -> String {
    let mut out = format!("HTTP/1.1 {}\r\n", response.status());
    for (name, value) in response.headers() {
        out.push_str(&format!(
            "{}: {}\r\n",
            name,
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    out
}

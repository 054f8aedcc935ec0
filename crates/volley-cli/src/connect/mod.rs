//! `volley connect URL`: a command-line WebSocket client. Interactive on a
//! terminal, line-oriented in a pipe; proxies, TLS options, `--reconnect`
//! and `--record`. `volley replay`, `volley subscribe` and `volley publish`
//! live next to it and share its connection flags.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use clap::Args;
use tokio::sync::mpsc;
use volley::Message;

pub(crate) mod exit;
mod interactive;
pub(crate) mod options;
mod pipe;
pub(crate) mod publish;
pub(crate) mod record;
pub(crate) mod replay;
pub(crate) mod session;
pub(crate) mod subscribe;

use exit::Ending;
use options::ClientArgs;
use session::{Backoff, Output};

/// Arguments of `volley connect`.
#[derive(Debug, Args)]
#[command(after_long_help = connect_after_help())]
pub(crate) struct ConnectArgs {
    /// The server: ws://HOST[:PORT]/PATH or wss://...
    /// Example: volley connect wss://echo.example/ws
    pub(crate) url: String,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// Prints the handshake request and response on stderr.
    /// Example: --show-headers
    #[arg(long)]
    pub(crate) show_headers: bool,
    /// Verbose: every message sent and received (with its size for binary
    /// ones), pings and pongs (with the round trip), connects and close
    /// codes, on stderr (pipe mode) or above the prompt. Example: -v
    #[arg(short = 'v', long)]
    pub(crate) verbose: bool,
    /// Pipe mode sends each line as a text message (the default).
    /// Example: --text
    #[arg(long, conflicts_with = "binary")]
    pub(crate) text: bool,
    /// Pipe mode sends each line as a binary message, decoded with
    /// --encoding. Example: --binary --encoding hex
    #[arg(long)]
    pub(crate) binary: bool,
    /// How binary payloads are written (and read with --binary) in pipe
    /// mode. Example: --encoding hex
    #[arg(long, value_enum, default_value = "base64")]
    pub(crate) encoding: Encoding,
    /// Reconnects after the connection drops or the server closes, with
    /// exponential backoff and full jitter (0.5 s up to 30 s), until
    /// interrupted; says so on stderr and in the record. Example: --reconnect
    #[arg(long)]
    pub(crate) reconnect: bool,
    /// Records every message both ways and the connection's events as JSON
    /// lines (t: seconds since start, dir: in/out/event, opcode, text or
    /// base64, code). Example: --record session.jsonl
    #[arg(long, value_name = "FILE")]
    pub(crate) record: Option<PathBuf>,
    /// After the input ends (pipe mode), waits until the server has been
    /// quiet this long before closing, so that replies still on their way
    /// are printed (0 closes at once). Example: --linger 200ms
    #[arg(long, value_name = "DURATION", value_parser = options::parse_duration, default_value = "1s")]
    pub(crate) linger: Duration,
    /// Forces pipe mode even on a terminal. Example: --pipe
    #[arg(long)]
    pub(crate) pipe: bool,
}

fn connect_after_help() -> String {
    format!(
        "On a terminal volley connect is interactive: type a line to send it; \
         received messages appear above the prompt as `HH:MM:SS.mmm < text`.\n\n{}\n\n\
         When stdin or stdout is not a terminal it runs in pipe mode: each input line is \
         one message, each received message one output line (binary ones in --encoding).\n\
         Example: printf 'a\\nb\\n' | volley connect ws://127.0.0.1:9001/ | jq -R .\n\n{}",
        interactive::COMMANDS_HELP,
        exit::EXIT_CODES_HELP
    )
}

/// How binary payloads are written as text.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Encoding {
    /// Standard base64 with padding.
    Base64,
    /// Lower-case hexadecimal.
    Hex,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Self::Base64 => "base64",
            Self::Hex => "hex",
        }
    }

    pub(crate) fn encode(self, bytes: &[u8]) -> String {
        match self {
            Self::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
            Self::Hex => hex::encode(bytes),
        }
    }

    fn decode(self, text: &[u8]) -> Result<Vec<u8>, String> {
        let text = text.trim_ascii();
        match self {
            Self::Base64 => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| e.to_string()),
            Self::Hex => hex::decode(text).map_err(|e| e.to_string()),
        }
    }
}

/// What both front ends need to show things.
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    binary: bool,
    encoding: Encoding,
    verbose: bool,
    show_headers: bool,
    reconnect: bool,
}

/// The time of day (UTC), `HH:MM:SS.mmm`.
pub(crate) fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ms = now.as_millis() % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

impl Shared {
    /// `HH:MM:SS.mmm < text` (or `[binary N B] hex`).
    fn describe(&self, marker: char, message: &Message) -> String {
        match message {
            Message::Text(t) => format!("{} {marker} {}", timestamp(), t.as_str()),
            Message::Binary(b) => format!(
                "{} {marker} [binary {} B] {}",
                timestamp(),
                b.len(),
                self.encoding.encode(b)
            ),
        }
    }

    /// The line for an event, if it is shown.
    fn describe_event(&self, event: &Output) -> Option<String> {
        let line = match event {
            Output::Connected { request, response } => {
                if !self.show_headers {
                    return Some(format!("{} * connected", timestamp()));
                }
                let mut s = String::new();
                for l in request.lines().filter(|l| !l.is_empty()) {
                    s.push_str(&format!("> {l}\n"));
                }
                for l in response.lines().filter(|l| !l.is_empty()) {
                    s.push_str(&format!("< {l}\n"));
                }
                s.push_str(&format!("{} * connected", timestamp()));
                s
            }
            Output::Sent(m) if self.verbose => self.describe('>', m),
            Output::Sent(_) => return None,
            Output::PingSent => format!("{} > ping", timestamp()),
            Output::Pong { rtt: Some(rtt) } => format!(
                "{} < pong ({:.1} ms)",
                timestamp(),
                rtt.as_secs_f64() * 1000.0
            ),
            Output::Pong { rtt: None } => format!("{} < pong", timestamp()),
            Output::Received(m) => self.describe('<', m),
            Output::Ended {
                code: Some(code),
                reason,
            } => {
                format!("{} * closed {code} {reason}", timestamp())
            }
            Output::Ended { code: None, reason } => {
                format!("{} * connection lost: {reason}", timestamp())
            }
            Output::Reconnecting { attempt, delay } => format!(
                "{} * reconnecting (attempt {attempt}) in {} ms",
                timestamp(),
                delay.as_millis()
            ),
        };
        Some(line)
    }

    /// Pipe mode: events on stderr (always the ends and reconnects; the rest
    /// with -v or --show-headers).
    fn report(&self, event: Output) {
        let shown = match &event {
            Output::Connected { .. } => self.verbose || self.show_headers,
            Output::Sent(_) | Output::PingSent | Output::Pong { .. } => self.verbose,
            Output::Ended { code, .. } => self.verbose || self.reconnect || *code != Some(1000),
            Output::Reconnecting { .. } => true,
            Output::Received(_) => true,
        };
        if shown {
            if let Some(line) = self.describe_event(&event) {
                eprintln!("{line}");
            }
        }
    }
}

/// Runs `volley connect`.
pub(crate) async fn run(args: ConnectArgs) -> Ending {
    let interactive =
        !args.pipe && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let shared = Shared {
        binary: args.binary,
        encoding: args.encoding,
        verbose: args.verbose,
        show_headers: args.show_headers,
        reconnect: args.reconnect,
    };
    // Check the flags once, before anything starts.
    if let Err(e) = args.client.builder(&args.url, &[]) {
        eprintln!("volley: {e}");
        return Ending::Failure;
    }
    let recorder = match record::Recorder::create(args.record.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("volley: --record: {e}");
            return Ending::Failure;
        }
    };
    let (input_tx, input_rx) = mpsc::channel(64);
    let (output_tx, output_rx) = mpsc::unbounded_channel();
    let client = args.client.clone();
    let url = args.url.clone();
    let make = move || {
        // Checked above; the same flags give the same result.
        client
            .builder(&url, &[])
            .unwrap_or_else(|_| volley::ClientBuilder::new(url.as_str()))
    };
    let reconnect = args.reconnect.then_some(Backoff {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(30),
    });
    if interactive {
        // Restore the terminal at exit even if the editor is mid-line.
        let saved = nix::sys::termios::tcgetattr(std::io::stdin()).ok();
        let printer = match interactive::start(shared, input_tx, output_rx) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("volley: cannot start the line editor: {e}");
                return Ending::Failure;
            }
        };
        let ending = session::drive(
            make,
            reconnect,
            Duration::ZERO,
            input_rx,
            output_tx,
            recorder,
        )
        .await;
        // The driver dropped its sender: the printer shows the last lines
        // and ends.
        let _ = tokio::task::spawn_blocking(move || printer.join()).await;
        if let Some(saved) = saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                &saved,
            );
        }
        println!();
        ending
    } else {
        let reader = tokio::spawn(pipe::read_stdin(shared.clone(), input_tx));
        let writer = tokio::spawn(pipe::write_stdout(shared, output_rx));
        let ending =
            session::drive(make, reconnect, args.linger, input_rx, output_tx, recorder).await;
        reader.abort();
        let _ = writer.await;
        ending
    }
}

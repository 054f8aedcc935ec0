//! Interactive mode on a terminal: a line editor with history (rustyline),
//! received messages printed above the prompt with a timestamp and a
//! direction marker, and slash commands.

use rustyline::ExternalPrinter as _;
use rustyline::error::ReadlineError;
use tokio::sync::mpsc;
use volley::Message;

use super::session::{Input, Output};
use super::{Shared, timestamp};

/// The slash commands, for `/help`.
pub(crate) const COMMANDS_HELP: &str = "\
Commands:
  /ping [TEXT]          send a ping (the pong shows its round trip)
  /close [CODE [REASON]] close (default 1000) and exit
  /binary HEX           send a binary message (e.g. /binary 68690a)
  /text TEXT            send TEXT as is (for a line starting with /)
  /help                 this help
Any other line is sent as a text message. Ctrl-D closes with 1000, Ctrl-C too (exit 130).";

/// What one typed line asks for.
#[derive(Debug, PartialEq)]
pub(crate) enum Command {
    Send(Input),
    Help,
    Invalid(String),
    Nothing,
}

/// Parses one typed line.
pub(crate) fn parse(line: &str) -> Command {
    let Some(rest) = line.strip_prefix('/') else {
        if line.is_empty() {
            return Command::Nothing;
        }
        return Command::Send(Input::Message(Message::text(line.to_owned())));
    };
    let (name, arg) = rest.split_once(' ').unwrap_or((rest, ""));
    match name {
        "ping" => Command::Send(Input::Ping(arg.as_bytes().to_vec())),
        "close" => {
            let arg = arg.trim();
            if arg.is_empty() {
                return Command::Send(Input::Close(1000, String::new()));
            }
            let (code, reason) = arg.split_once(' ').unwrap_or((arg, ""));
            match code.parse::<u16>() {
                Ok(c) if c == 1000 || (3000..5000).contains(&c) => {
                    Command::Send(Input::Close(c, reason.trim().to_owned()))
                }
                _ => Command::Invalid(format!(
                    "/close: {code:?} is not a code one may send (1000 or 3000-4999)"
                )),
            }
        }
        "binary" => {
            let hex: String = arg.split_whitespace().collect();
            match hex::decode(&hex) {
                Ok(bytes) => Command::Send(Input::Message(Message::binary(bytes))),
                Err(e) => Command::Invalid(format!("/binary: {e}")),
            }
        }
        "text" => Command::Send(Input::Message(Message::text(arg.to_owned()))),
        "help" | "?" => Command::Help,
        _ => Command::Invalid(format!("unknown command /{name} (try /help)")),
    }
}

/// Runs the line editor on its own thread; typed lines go to `input`, and a
/// printer thread shows `output` above the prompt.
pub(crate) fn start(
    shared: Shared,
    input: mpsc::Sender<Input>,
    mut output: mpsc::UnboundedReceiver<Output>,
) -> Result<std::thread::JoinHandle<()>, Box<dyn std::error::Error>> {
    let mut editor = rustyline::DefaultEditor::new()?;
    let mut printer = editor.create_external_printer()?;
    let printing = shared.clone();
    let printing_thread = std::thread::spawn(move || {
        while let Some(event) = output.blocking_recv() {
            let line = match event {
                Output::Received(message) => printing.describe('<', &message),
                Output::Sent(message) if printing.verbose => printing.describe('>', &message),
                other => match printing.describe_event(&other) {
                    Some(line) => line,
                    None => continue,
                },
            };
            if printer.print(format!("{line}\n")).is_err() {
                return;
            }
        }
    });
    std::thread::spawn(move || {
        loop {
            let command = match editor.readline("> ") {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    parse(&line)
                }
                Err(ReadlineError::Interrupted) => Command::Send(Input::Interrupt),
                Err(_) => Command::Send(Input::Close(1000, String::new())),
            };
            let end = matches!(
                command,
                Command::Send(Input::Close(..)) | Command::Send(Input::Interrupt)
            );
            match command {
                Command::Send(i) => {
                    if input.blocking_send(i).is_err() {
                        return;
                    }
                }
                Command::Help => println!("{COMMANDS_HELP}"),
                Command::Invalid(e) => println!("{} ! {e}", timestamp()),
                Command::Nothing => {}
            }
            if end {
                return;
            }
        }
    });
    Ok(printing_thread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert!(
            matches!(parse("hi"), Command::Send(Input::Message(Message::Text(t))) if t.as_str() == "hi")
        );
        assert!(matches!(parse("/close"), Command::Send(Input::Close(1000, r)) if r.is_empty()));
        assert!(
            matches!(parse("/close 4000 bye now"), Command::Send(Input::Close(4000, r)) if r == "bye now")
        );
        assert!(matches!(parse("/close 1006"), Command::Invalid(_)));
        assert!(
            matches!(parse("/binary 68 69"), Command::Send(Input::Message(Message::Binary(b))) if &b[..] == b"hi")
        );
        assert!(matches!(parse("/binary zz"), Command::Invalid(_)));
        assert!(
            matches!(parse("/text /x"), Command::Send(Input::Message(Message::Text(t))) if t.as_str() == "/x")
        );
        assert!(matches!(parse("/ping"), Command::Send(Input::Ping(p)) if p.is_empty()));
        assert!(matches!(parse("/nope"), Command::Invalid(_)));
        assert_eq!(parse("/help"), Command::Help);
        assert_eq!(parse(""), Command::Nothing);
    }
}

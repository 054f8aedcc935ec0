//! Pipe mode: each input line is one message, each received message one
//! output line, so `volley connect` composes with jq, grep and shell loops.

use std::io::Write as _;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::mpsc;
use volley::Message;

use super::Shared;
use super::session::{Input, Output};

/// Reads stdin into `input` until EOF (then drops it: the driver closes with
/// 1000) or Ctrl-C.
pub(crate) async fn read_stdin(shared: Shared, input: mpsc::Sender<Input>) {
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = tokio::select! {
            read = stdin.read_until(b'\n', &mut line) => read,
            _ = tokio::signal::ctrl_c() => {
                let _ = input.send(Input::Interrupt).await;
                return;
            }
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let message = if shared.binary {
            match shared.encoding.decode(&line) {
                Ok(bytes) => Message::binary(bytes),
                Err(e) => {
                    eprintln!(
                        "volley: skipped a line that is not {}: {e}",
                        shared.encoding.name()
                    );
                    continue;
                }
            }
        } else {
            match String::from_utf8(line.clone()) {
                Ok(text) => Message::text(text),
                Err(_) => {
                    eprintln!("volley: skipped a line that is not UTF-8 (use --binary)");
                    continue;
                }
            }
        };
        if input.send(Input::Message(message)).await.is_err() {
            return;
        }
    }
}

/// Writes what arrives to stdout, one line per message; events go to stderr
/// with `-v`.
pub(crate) async fn write_stdout(shared: Shared, mut output: mpsc::UnboundedReceiver<Output>) {
    let mut out = std::io::BufWriter::new(std::io::stdout());
    while let Some(event) = output.recv().await {
        let mut next = Some(event);
        // Everything already queued goes out in one write.
        while let Some(event) = next {
            match event {
                Output::Received(message) => {
                    if shared.verbose {
                        eprintln!("{}", shared.describe('<', &message));
                    }
                    let ok = match &message {
                        Message::Text(t) => out.write_all(t.as_bytes()),
                        Message::Binary(b) => out.write_all(shared.encoding.encode(b).as_bytes()),
                    }
                    .and_then(|()| out.write_all(b"\n"));
                    if ok.is_err() {
                        // stdout closed (`| head`): nothing more to do.
                        return;
                    }
                }
                other => shared.report(other),
            }
            next = output.try_recv().ok();
        }
        if out.flush().is_err() {
            return;
        }
    }
}

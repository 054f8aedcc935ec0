//! `--record FILE`: every message both ways, and the connection's events,
//! as JSON lines; read back by `volley replay`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use volley::Message;

/// One line of a record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Seconds since the start of the session.
    pub(crate) t: f64,
    /// `out` (sent by us), `in` (received), or `event`.
    pub(crate) dir: String,
    /// `text`, `binary`, `ping` or `close` (messages and frames); absent for
    /// events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) opcode: Option<String>,
    /// The payload of a text message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<String>,
    /// The payload of a binary message or ping, in standard base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) base64: Option<String>,
    /// The close code (`close` frames and `closed` events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) code: Option<u16>,
    /// The close reason, or the event's detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// `connected`, `closed`, `dropped`, `reconnecting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) event: Option<String>,
}

impl Entry {
    /// A message entry.
    pub(crate) fn message(dir: &str, message: &Message) -> Self {
        let (opcode, text, base64) = match message {
            Message::Text(t) => ("text", Some(t.as_str().to_owned()), None),
            Message::Binary(b) => (
                "binary",
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(b)),
            ),
        };
        Self {
            dir: dir.into(),
            opcode: Some(opcode.into()),
            text,
            base64,
            ..Self::default()
        }
    }

    /// An event entry.
    pub(crate) fn event(event: &str, code: Option<u16>, reason: Option<String>) -> Self {
        Self {
            dir: "event".into(),
            event: Some(event.into()),
            code,
            reason,
            ..Self::default()
        }
    }

    /// A ping we sent.
    pub(crate) fn ping(payload: &[u8]) -> Self {
        Self {
            dir: "out".into(),
            opcode: Some("ping".into()),
            base64: Some(base64::engine::general_purpose::STANDARD.encode(payload)),
            ..Self::default()
        }
    }

    /// A pong received.
    pub(crate) fn pong() -> Self {
        Self {
            dir: "in".into(),
            opcode: Some("pong".into()),
            ..Self::default()
        }
    }

    /// A close frame (sent or received).
    pub(crate) fn close(dir: &str, code: u16, reason: &str) -> Self {
        Self {
            dir: dir.into(),
            opcode: Some("close".into()),
            code: Some(code),
            reason: (!reason.is_empty()).then(|| reason.to_owned()),
            ..Self::default()
        }
    }

    /// The message of a `text` or `binary` entry.
    pub(crate) fn to_message(&self) -> Option<Message> {
        match self.opcode.as_deref()? {
            "text" => Some(Message::text(self.text.clone().unwrap_or_default())),
            "binary" => base64::engine::general_purpose::STANDARD
                .decode(self.base64.as_deref().unwrap_or(""))
                .ok()
                .map(Message::binary),
            _ => None,
        }
    }
}

/// Writes a record; cheap to clone, one line per entry, flushed each time
/// so that an interrupted session keeps its record.
#[derive(Clone)]
pub(crate) struct Recorder {
    start: Instant,
    out: Option<Arc<Mutex<BufWriter<File>>>>,
}

impl Recorder {
    /// Records to `path` (None: records nothing).
    pub(crate) fn create(path: Option<&Path>) -> std::io::Result<Self> {
        let out = match path {
            Some(p) => Some(Arc::new(Mutex::new(BufWriter::new(File::create(p)?)))),
            None => None,
        };
        Ok(Self {
            start: Instant::now(),
            out,
        })
    }

    /// Appends `entry`, stamped with the time since the start.
    pub(crate) fn write(&self, mut entry: Entry) {
        let Some(out) = &self.out else { return };
        entry.t = (self.start.elapsed().as_secs_f64() * 1e6).round() / 1e6;
        let Ok(line) = serde_json::to_string(&entry) else {
            return;
        };
        if let Ok(mut out) = out.lock() {
            // A full disk must not end the session; the record is best effort.
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
    }
}

/// Reads a record.
pub(crate) fn read(path: &Path) -> Result<Vec<Entry>, Box<dyn std::error::Error>> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut entries = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: Entry = serde_json::from_str(&line)
            .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        entries.push(entry);
    }
    Ok(entries)
}

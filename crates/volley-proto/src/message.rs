//! Messages, as the application sees them.

use std::fmt;

use bytes::Bytes;

use crate::frame::{CloseCode, OpCode, PreparedFrame, utf8};

/// A complete data message.
///
/// ```
/// use volley_proto::Message;
///
/// let text = Message::text("héllo");
/// assert!(text.is_text());
/// assert_eq!(text.as_text(), Some("héllo"));
/// assert_eq!(text.len(), 6); // bytes, not characters
///
/// let binary = Message::binary(vec![1u8, 2, 3]);
/// assert_eq!(binary.as_text(), None);
/// assert_eq!(binary.as_bytes(), &[1, 2, 3]);
/// // Strings and byte vectors convert, so `send` takes either.
/// assert_eq!(Message::from("hi"), Message::text("hi"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message; always valid UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::Text(text.into())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::Binary(data.into())
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Binary(b) => b,
        }
    }

    /// The payload, without copying.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Self::Text(t) => t.into_bytes(),
            Self::Binary(b) => b,
        }
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// True when the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True for a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// The text of a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t.as_str()),
            Self::Binary(_) => None,
        }
    }
}

impl PreparedFrame {
    /// Encodes `message` as one final, unmasked frame (the frame layer
    /// knows no messages: this lives with [`Message`]).
    pub fn new(message: &Message) -> Self {
        match message {
            Message::Text(t) => Self::encode(OpCode::Text, t.as_bytes()),
            Message::Binary(b) => Self::encode(OpCode::Binary, b),
        }
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Self::Text(s.into())
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Self::Text(s.into())
    }
}

impl From<Vec<u8>> for Message {
    fn from(v: Vec<u8>) -> Self {
        Self::Binary(v.into())
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Self::Binary(b)
    }
}

/// Reference-counted bytes that are known to be valid UTF-8.
///
/// Cloning is cheap (a reference count), so one text can be sent to many
/// connections without copying.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps `bytes` after checking that they are UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, utf8::InvalidUtf8> {
        utf8::validate(&bytes)?;
        Ok(Self(bytes))
    }

    /// Wraps bytes that the caller has already validated.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// An empty text.
    pub const fn new() -> Self {
        Self(Bytes::new())
    }

    /// Wraps a static string without allocating.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // The bytes were validated when this value was made; this check
        // (instead of an unchecked conversion, which needs `unsafe`) runs at
        // SIMD speed.
        simdutf8::basic::from_utf8(&self.0).unwrap_or_default()
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The raw bytes, without copying.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::ops::Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// The body of a close frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, at most 123 bytes of UTF-8.
    pub reason: Utf8Bytes,
}

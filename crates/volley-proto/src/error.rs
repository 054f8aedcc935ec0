//! Errors of the protocol core. Each layer has its own enum; protocol errors
//! know the close code they are answered with.

use crate::frame::{CloseCode, HeaderError};

/// The peer broke the protocol or a limit; the connection fails with
/// [`close_code`](Self::close_code).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame header is malformed.
    #[error("malformed frame header: {0}")]
    Header(#[from] HeaderError),
    /// A client sent a frame without a mask.
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// A server sent a masked frame.
    #[error("server frame is masked")]
    MaskedFrame,
    /// RSV1, RSV2 or RSV3 is set with no extension that defines it.
    #[error("reserved bits {0:#05b} set without a negotiated extension")]
    ReservedBits(u8),
    /// A continuation frame arrived with no message in progress.
    #[error("continuation frame with no message in progress")]
    UnexpectedContinuation,
    /// A new data frame arrived while a fragmented message was in progress.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// A frame is larger than the frame size limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The declared length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A message is, or would become, larger than the message size limit.
    #[error("message exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// The limit.
        max: usize,
    },
    /// A text message or close reason is not valid UTF-8.
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// A close frame carries a code that may not be sent.
    #[error("close code {0} is not allowed on the wire")]
    InvalidCloseCode(u16),
    /// A close frame has a one-byte payload.
    #[error("close frame payload of one byte")]
    TruncatedClose,
    /// A close frame reason is not valid UTF-8.
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// Compressed data could not be inflated.
    #[error("corrupt compressed data")]
    CorruptDeflate,
    /// The transport closed before the closing handshake completed.
    #[error("the connection closed without a closing handshake")]
    Eof,
    /// The peer did not answer our close frame in time.
    #[error("the peer did not complete the closing handshake in time")]
    CloseTimeout,
    /// No pong answered a keepalive ping within the keepalive timeout.
    #[error("no pong within the keepalive timeout")]
    KeepaliveTimeout,
}

impl ProtocolError {
    /// The close code this error is answered with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::FrameTooLarge { .. } | Self::MessageTooLarge { .. } => CloseCode::MESSAGE_TOO_BIG,
            Self::InvalidUtf8 | Self::InvalidCloseReason | Self::CorruptDeflate => {
                CloseCode::INVALID_PAYLOAD
            }
            Self::CloseTimeout | Self::Eof => CloseCode::ABNORMAL,
            Self::KeepaliveTimeout => CloseCode::INTERNAL_ERROR,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// A send that the connection refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A close frame was already sent or the connection is closed.
    #[error("the connection is closing or closed")]
    Closed,
    /// A control frame payload longer than 125 bytes.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLong(usize),
    /// A close code that may not be sent.
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// A close reason longer than 123 bytes.
    #[error("close reason of {0} bytes exceeds 123")]
    ReasonTooLong(usize),
    /// A text fragment sequence that is not valid UTF-8.
    #[error("text fragments are not valid UTF-8")]
    InvalidUtf8,
    /// A whole message was sent while a fragmented one is in progress, or a
    /// continuation with none in progress.
    #[error("fragment sequence violated: {0}")]
    Fragmentation(&'static str),
}

/// A configuration that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A limit that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// The frame limit exceeds the message limit.
    #[error("max_frame_size ({frame}) exceeds max_message_size ({message})")]
    FrameAboveMessage {
        /// The frame limit.
        frame: usize,
        /// The message limit.
        message: usize,
    },
    /// A window size outside 8 to 15.
    #[error("{name} must be between 8 and 15, got {value}")]
    WindowBits {
        /// Which setting.
        name: &'static str,
        /// The value given.
        value: u8,
    },
    /// A compression level outside 0 to 9.
    #[error("compression level must be between 0 and 9, got {0}")]
    Level(u32),
    /// permessage-deflate settings in a build without the `deflate` feature.
    #[error("permessage-deflate needs the `deflate` feature of volley-proto")]
    DeflateUnavailable,
}

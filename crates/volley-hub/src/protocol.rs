//! The `volley.v1` wire format (docs/protocol.md): parsing commands, encoding
//! replies and pushes. Pure functions of their input.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The subprotocol this hub speaks.
pub(crate) const SUBPROTOCOL: &str = "volley.v1";
/// The WebSocket endpoint.
pub(crate) const PATH: &str = "/connection/websocket";
/// The largest integer a JavaScript number holds exactly.
pub(crate) const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Error codes of replies (§12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 100: the server failed.
    Internal,
    /// 101: the token is invalid or missing.
    Unauthorized,
    /// 102: the namespace is not configured.
    UnknownChannel,
    /// 103: not allowed.
    PermissionDenied,
    /// 104: unknown method.
    MethodNotFound,
    /// 105: subscribed already.
    AlreadySubscribed,
    /// 106: a server-wide limit.
    LimitExceeded,
    /// 107: missing, ill-typed or malformed parameters.
    BadRequest,
    /// 108: the feature is disabled here.
    NotAvailable,
    /// 109: the token's `exp` has passed.
    TokenExpired,
    /// 110: over the command rate.
    TooManyRequests,
    /// 111: the command needs a subscription.
    NotSubscribed,
    /// 112: over the channels-per-connection limit.
    TooManyChannels,
    /// 113: `since` is not a position in the current stream.
    UnrecoverablePosition,
    /// 100 too: the engine was asked but did not answer; the operation (a
    /// publish) may or may not have taken effect. The HTTP API tells it
    /// apart (504) from a refusal (503).
    OutcomeUnknown,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Self::Internal | Self::OutcomeUnknown => 100,
            Self::Unauthorized => 101,
            Self::UnknownChannel => 102,
            Self::PermissionDenied => 103,
            Self::MethodNotFound => 104,
            Self::AlreadySubscribed => 105,
            Self::LimitExceeded => 106,
            Self::BadRequest => 107,
            Self::NotAvailable => 108,
            Self::TokenExpired => 109,
            Self::TooManyRequests => 110,
            Self::NotSubscribed => 111,
            Self::TooManyChannels => 112,
            Self::UnrecoverablePosition => 113,
        }
    }

    /// The message of the §12 table.
    pub fn message(self) -> &'static str {
        match self {
            Self::Internal => "internal server error",
            Self::OutcomeUnknown => "engine did not answer, outcome unknown",
            Self::Unauthorized => "unauthorized",
            Self::UnknownChannel => "unknown channel",
            Self::PermissionDenied => "permission denied",
            Self::MethodNotFound => "method not found",
            Self::AlreadySubscribed => "already subscribed",
            Self::LimitExceeded => "limit exceeded",
            Self::BadRequest => "bad request",
            Self::NotAvailable => "not available",
            Self::TokenExpired => "token expired",
            Self::TooManyRequests => "too many requests",
            Self::NotSubscribed => "not subscribed",
            Self::TooManyChannels => "too many channels",
            Self::UnrecoverablePosition => "unrecoverable position",
        }
    }

    /// Whether retrying later, unchanged, may succeed.
    pub fn temporary(self) -> bool {
        matches!(
            self,
            Self::Internal | Self::OutcomeUnknown | Self::LimitExceeded | Self::TooManyRequests
        )
    }
}

/// The error object of a reply.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ReplyError {
    /// The code.
    pub code: u16,
    /// For logs.
    pub message: &'static str,
    /// Whether a retry may succeed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub temporary: bool,
}

impl From<ErrorCode> for ReplyError {
    fn from(code: ErrorCode) -> Self {
        Self {
            code: code.code(),
            message: code.message(),
            temporary: code.temporary(),
        }
    }
}

/// Disconnect codes (§13): the code of the `disconnect` push and of the close
/// frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectCode {
    /// 4000: reconnect (HTTP API).
    Reconnect,
    /// 4001: the node is draining.
    Shutdown,
    /// 4002: the outbound queue overflowed.
    SlowConsumer,
    /// 4003: no `connect` in time.
    ConnectTimeout,
    /// 4005: the node can no longer guarantee delivery in order (a gap in a
    /// channel's stream that history cannot fill, or a lost stream).
    InsufficientState,
    /// 4006: too many connections of the user (after error 106).
    ConnectionLimit,
    /// 4007: kept sending after 110.
    RateLimited,
    /// 4400: the session's token expired.
    TokenExpired,
    /// 4401: the connect token was invalid or missing.
    Unauthorized,
    /// 4500: the client broke the protocol.
    BadRequest,
    /// 4501: disconnected for good by the application.
    Forbidden,
}

impl DisconnectCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Self::Reconnect => 4000,
            Self::Shutdown => 4001,
            Self::SlowConsumer => 4002,
            Self::ConnectTimeout => 4003,
            Self::InsufficientState => 4005,
            Self::ConnectionLimit => 4006,
            Self::RateLimited => 4007,
            Self::TokenExpired => 4400,
            Self::Unauthorized => 4401,
            Self::BadRequest => 4500,
            Self::Forbidden => 4501,
        }
    }

    /// The reason sent with it.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Reconnect => "reconnect",
            Self::Shutdown => "shutdown",
            Self::SlowConsumer => "slow consumer",
            Self::ConnectTimeout => "connect timeout",
            Self::InsufficientState => "insufficient state",
            Self::ConnectionLimit => "connection limit",
            Self::RateLimited => "rate limited",
            Self::TokenExpired => "token expired",
            Self::Unauthorized => "unauthorized",
            Self::BadRequest => "bad request",
            Self::Forbidden => "forbidden",
        }
    }

    /// The range rule: 4000-4499 reconnect, 4500-4999 do not.
    pub fn reconnect(self) -> bool {
        self.code() < 4500
    }
}

/// A command as it arrives, before its params are read.
#[derive(Debug)]
pub(crate) struct Command<'a> {
    /// The client's id for the reply.
    pub id: u64,
    /// The method name.
    pub method: &'a str,
    /// The raw params (`{}` when absent).
    pub params: &'a RawValue,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    id: Option<serde_json::Number>,
    #[serde(default, borrow)]
    method: Option<&'a str>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
}

/// Why a client message is not a command (the connection ends with 4500).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvelopeError {
    /// Not a JSON object with the envelope's fields.
    #[error("not a JSON command object")]
    NotJson,
    /// `id` missing, not an integer, or out of 1..2^53-1.
    #[error("missing or invalid id")]
    BadId,
}

/// The outcome of parsing a message: a command, or a command with a valid
/// `id` whose `method` is missing or not a string (error 107 to that id).
#[derive(Debug)]
pub(crate) enum Parsed<'a> {
    /// A well-formed command.
    Command(Command<'a>),
    /// A valid `id` but no usable `method`.
    NoMethod(u64),
}

const EMPTY_PARAMS: &str = "{}";

/// Parses one client message.
pub(crate) fn parse_command(text: &str) -> Result<Parsed<'_>, EnvelopeError> {
    // `method` may be a non-string; read it leniently so that the reply is a
    // 107 to a valid id rather than a disconnect.
    let env: Envelope<'_> = match serde_json::from_str(text) {
        Ok(env) => env,
        Err(_) => return parse_lenient(text),
    };
    let id = valid_id(env.id.as_ref())?;
    let params = match env.params {
        Some(p) => p,
        None => empty_params(),
    };
    Ok(match env.method {
        Some(method) => Parsed::Command(Command { id, method, params }),
        None => Parsed::NoMethod(id),
    })
}

fn empty_params() -> &'static RawValue {
    // A constant that always parses.
    static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| {
        RawValue::from_string(EMPTY_PARAMS.to_owned())
            .unwrap_or_else(|_| unreachable!("\"{{}}\" is JSON"))
    })
}

fn parse_lenient(text: &str) -> Result<Parsed<'_>, EnvelopeError> {
    let value: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|_| EnvelopeError::NotJson)?;
    let id = match value.get("id") {
        Some(serde_json::Value::Number(n)) => valid_id(Some(n))?,
        _ => return Err(EnvelopeError::BadId),
    };
    Ok(Parsed::NoMethod(id))
}

fn valid_id(id: Option<&serde_json::Number>) -> Result<u64, EnvelopeError> {
    match id.and_then(serde_json::Number::as_u64) {
        Some(id) if (1..=MAX_SAFE_INTEGER).contains(&id) => Ok(id),
        _ => Err(EnvelopeError::BadId),
    }
}

/// Reads a command's params into `T`; `None` is error 107.
pub(crate) fn params<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
    serde_json::from_str(raw.get()).ok()
}

/// Describes one connection in a channel (§4.1).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The client id.
    pub client: Arc<str>,
    /// The user id; `""` when anonymous.
    pub user: Arc<str>,
    /// The connection token's `info`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn_info: Option<Arc<RawValue>>,
    /// The subscription token's `info`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chan_info: Option<Arc<RawValue>>,
}

/// One publication as stored and replayed (§4.2).
#[derive(Debug, Serialize, Deserialize)]
pub struct Publication {
    /// Its offset; absent in channels without history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The payload.
    pub data: Box<RawValue>,
    /// The publishing client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<ClientInfo>,
}

/// A stream position (§4.3).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct StreamPosition {
    /// The epoch.
    pub epoch: String,
    /// The offset.
    pub offset: u64,
}

/// Encodes `{"id":ID,"result":RESULT}`.
pub(crate) fn reply<T: Serialize>(id: u64, result: &T) -> String {
    #[derive(Serialize)]
    struct Reply<'a, T> {
        id: u64,
        result: &'a T,
    }
    to_json(&Reply { id, result })
}

/// Encodes `{"id":ID,"error":{...}}`.
pub(crate) fn error_reply(id: u64, code: ErrorCode) -> String {
    #[derive(Serialize)]
    struct Reply {
        id: u64,
        error: ReplyError,
    }
    to_json(&Reply {
        id,
        error: code.into(),
    })
}

/// Encodes the `publication` push.
pub(crate) fn publication_push(channel: &str, publication: &Publication) -> String {
    #[derive(Serialize)]
    struct Push<'a> {
        push: &'static str,
        channel: &'a str,
        #[serde(flatten)]
        publication: &'a Publication,
    }
    to_json(&Push {
        push: "publication",
        channel,
        publication,
    })
}

/// Encodes a `join` or `leave` push.
pub(crate) fn presence_push(kind: &'static str, channel: &str, info: &ClientInfo) -> String {
    #[derive(Serialize)]
    struct Push<'a> {
        push: &'static str,
        channel: &'a str,
        info: &'a ClientInfo,
    }
    to_json(&Push {
        push: kind,
        channel,
        info,
    })
}

/// Encodes the `message` push.
pub(crate) fn message_push(data: &RawValue) -> String {
    #[derive(Serialize)]
    struct Push<'a> {
        push: &'static str,
        data: &'a RawValue,
    }
    to_json(&Push {
        push: "message",
        data,
    })
}

/// Encodes the `unsubscribe` push.
pub(crate) fn unsubscribe_push(channel: &str, code: u16, reason: &str) -> String {
    #[derive(Serialize)]
    struct Push<'a> {
        push: &'static str,
        channel: &'a str,
        code: u16,
        reason: &'a str,
        resubscribe: bool,
    }
    to_json(&Push {
        push: "unsubscribe",
        channel,
        code,
        reason,
        resubscribe: (2000..2500).contains(&code),
    })
}

/// Encodes the `disconnect` push.
pub(crate) fn disconnect_push(
    code: DisconnectCode,
    reason: Option<&str>,
    reconnect_after_ms: Option<u64>,
) -> String {
    #[derive(Serialize)]
    struct Push<'a> {
        push: &'static str,
        code: u16,
        reason: &'a str,
        reconnect: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reconnect_after_ms: Option<u64>,
    }
    to_json(&Push {
        push: "disconnect",
        code: code.code(),
        reason: reason.unwrap_or(code.reason()),
        reconnect: code.reconnect(),
        reconnect_after_ms,
    })
}

/// Serializes types whose serialization cannot fail (no maps with non-string
/// keys, no failing `Serialize` impls).
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| {
        tracing::error!("serialization failed: {e}");
        String::from("{}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(text: &str) -> Result<(u64, String, String), EnvelopeError> {
        match parse_command(text)? {
            Parsed::Command(c) => Ok((c.id, c.method.to_owned(), c.params.get().to_owned())),
            Parsed::NoMethod(id) => Ok((id, String::new(), String::new())),
        }
    }

    #[test]
    fn commands_and_their_ids() {
        assert_eq!(
            command(r#"{"id":7,"method":"subscribe","params":{"channel":"a"}}"#).unwrap(),
            (7, "subscribe".into(), r#"{"channel":"a"}"#.into())
        );
        assert_eq!(
            command(r#"{"method":"ping","id":1}"#).unwrap(),
            (1, "ping".into(), "{}".into())
        );
        assert_eq!(
            command(r#"{"id":3,"method":5}"#).unwrap(),
            (3, String::new(), String::new())
        );
        assert_eq!(
            command(r#"{"id":9007199254740991,"method":"ping","x":[1]}"#)
                .unwrap()
                .0,
            MAX_SAFE_INTEGER
        );
        for bad in [
            r#"{"method":"ping"}"#,
            r#"{"id":0,"method":"ping"}"#,
            r#"{"id":-1,"method":"ping"}"#,
            r#"{"id":1.5,"method":"ping"}"#,
            r#"{"id":"1","method":"ping"}"#,
            r#"{"id":9007199254740992,"method":"ping"}"#,
        ] {
            assert_eq!(command(bad), Err(EnvelopeError::BadId), "{bad}");
        }
        for bad in ["[]", "1", "nope", ""] {
            assert!(command(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encodings_match_the_spec() {
        assert_eq!(
            error_reply(4, ErrorCode::PermissionDenied),
            r#"{"id":4,"error":{"code":103,"message":"permission denied"}}"#
        );
        assert_eq!(
            error_reply(4, ErrorCode::TooManyRequests),
            r#"{"id":4,"error":{"code":110,"message":"too many requests","temporary":true}}"#
        );
        assert_eq!(
            disconnect_push(DisconnectCode::SlowConsumer, None, None),
            r#"{"push":"disconnect","code":4002,"reason":"slow consumer","reconnect":true}"#
        );
        let publication = Publication {
            offset: Some(13),
            data: RawValue::from_string(r#"{"text":"hi"}"#.into()).unwrap(),
            info: None,
        };
        assert_eq!(
            publication_push("chat:lobby", &publication),
            r#"{"push":"publication","channel":"chat:lobby","offset":13,"data":{"text":"hi"}}"#
        );
        assert_eq!(
            unsubscribe_push("c", 2000, "insufficient state"),
            r#"{"push":"unsubscribe","channel":"c","code":2000,"reason":"insufficient state","resubscribe":true}"#
        );
    }
}

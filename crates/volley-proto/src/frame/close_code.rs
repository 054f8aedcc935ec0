//! Close status codes (RFC 6455 §7.4) and which of them may appear on the wire.

use std::fmt;

/// A close status code. The constants are the codes registered with IANA.
///
/// ```
/// use volley_proto::CloseCode;
///
/// assert_eq!(CloseCode::NORMAL, CloseCode(1000));
/// // Codes an application may send: the registered ones and 3000-4999.
/// assert!(CloseCode(4000).is_allowed_on_wire());
/// // 1005 and 1006 only report what happened; they never go on the wire.
/// assert!(!CloseCode::ABNORMAL.is_allowed_on_wire());
/// assert!(!CloseCode(999).is_allowed_on_wire());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection closed without a close frame (never sent on the wire).
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: payload inconsistent with the message type, such as invalid UTF-8 in text.
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message violates the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message is too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (overload).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway received an invalid response.
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: TLS handshake failure (never sent on the wire).
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// Whether this code may be carried in a close frame (sent or received).
    ///
    /// Allowed: 1000–1003, 1007–1014 (defined by RFC 6455 and registered since),
    /// 3000–3999 (registered by libraries and frameworks) and 4000–4999 (private use).
    /// Everything else, 0–999, 1004–1006, 1015, 1016–2999 and 5000 and up, is a
    /// protocol error.
    pub const fn is_allowed_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_rules_follow_the_registry() {
        let allowed = |c: u16| CloseCode(c).is_allowed_on_wire();
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
        ] {
            assert!(allowed(c), "{c}");
        }
        for c in [3000, 3999, 4000, 4999] {
            assert!(allowed(c), "{c}");
        }
        for c in [
            0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!allowed(c), "{c}");
        }
    }
}

//! Negotiating permessage-deflate (RFC 7692 §5–7.1) in both roles.

use crate::error::ConfigError;
use crate::headers::Extension;

/// The extension's registered name.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// What this endpoint offers (client) or accepts (server).
///
/// Window sizes are base-2 logarithms from 8 to 15. zlib cannot compress with
/// an 8-bit window; when 8 is negotiated for our own direction, messages are
/// sent uncompressed (RFC 7692 lets any message go uncompressed).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The largest window the server may compress with.
    pub server_max_window_bits: u8,
    /// The largest window the client may compress with.
    pub client_max_window_bits: u8,
    /// zlib compression level, 0 to 9.
    pub level: u32,
    /// Messages shorter than this are sent uncompressed.
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: 1,
            threshold: 32,
        }
    }
}

impl DeflateConfig {
    /// Sets `server_no_context_takeover`.
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Sets `client_no_context_takeover`.
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// Sets `server_max_window_bits` (8 to 15).
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits;
        self
    }

    /// Sets `client_max_window_bits` (8 to 15).
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits;
        self
    }

    /// Sets the compression level (0 to 9).
    pub fn level(mut self, level: u32) -> Self {
        self.level = level;
        self
    }

    /// Sets the size below which messages go uncompressed.
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("server_max_window_bits", self.server_max_window_bits),
            ("client_max_window_bits", self.client_max_window_bits),
        ] {
            if !(8..=15).contains(&value) {
                return Err(ConfigError::WindowBits { name, value });
            }
        }
        if self.level > 9 {
            return Err(ConfigError::Level(self.level));
        }
        Ok(())
    }

    /// The client's offer, as a `Sec-WebSocket-Extensions` value.
    pub fn client_offer(&self) -> String {
        let mut s = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            s.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if self.client_max_window_bits < 15 {
            s.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits
            ));
        } else {
            s.push_str("; client_max_window_bits");
        }
        s
    }

    /// Server side: picks the first offer that can be honored, in order.
    ///
    /// `Ok(None)` declines (no offer, or none acceptable); an offer with a
    /// malformed or out-of-range parameter is an error, answered with 400.
    pub fn accept_offers(
        &self,
        offers: &[Extension],
    ) -> Result<Option<DeflateParams>, NegotiationError> {
        for offer in offers
            .iter()
            .filter(|e| e.name.eq_ignore_ascii_case(EXTENSION_NAME))
        {
            let parsed = OfferedParams::parse(offer)?;
            if parsed.unknown {
                continue;
            }
            let server_max_window_bits = match parsed.server_max_window_bits {
                Some(requested) => requested.min(self.server_max_window_bits),
                None => self.server_max_window_bits,
            };
            let client_max_window_bits = match parsed.client_max_window_bits {
                // The client said it can limit its window: ask for ours.
                Some(offered) => offered.unwrap_or(15).min(self.client_max_window_bits),
                // It cannot be asked to: it will use up to 15.
                None => 15,
            };
            return Ok(Some(DeflateParams {
                server_no_context_takeover: parsed.server_no_context_takeover
                    || self.server_no_context_takeover,
                client_no_context_takeover: parsed.client_no_context_takeover
                    || self.client_no_context_takeover,
                server_max_window_bits,
                client_max_window_bits,
                level: self.level,
                threshold: self.threshold,
            }));
        }
        Ok(None)
    }

    /// Client side: checks the server's response against our offer.
    pub fn accept_response(
        &self,
        response: &[Extension],
    ) -> Result<Option<DeflateParams>, NegotiationError> {
        let mut ours = response
            .iter()
            .filter(|e| e.name.eq_ignore_ascii_case(EXTENSION_NAME));
        let Some(ext) = ours.next() else {
            return Ok(None);
        };
        if ours.next().is_some() {
            return Err(NegotiationError::Duplicate);
        }
        let p = OfferedParams::parse(ext)?;
        if p.unknown {
            return Err(NegotiationError::UnknownParameter);
        }
        let server_max_window_bits = match p.server_max_window_bits {
            Some(bits) if bits > self.server_max_window_bits => {
                return Err(NegotiationError::WindowAboveOffer("server_max_window_bits"));
            }
            Some(bits) => bits,
            None if self.server_max_window_bits < 15 => {
                return Err(NegotiationError::WindowAboveOffer("server_max_window_bits"));
            }
            None => 15,
        };
        let client_max_window_bits = match p.client_max_window_bits {
            Some(None) => return Err(NegotiationError::MissingValue("client_max_window_bits")),
            Some(Some(bits)) if bits > self.client_max_window_bits => {
                return Err(NegotiationError::WindowAboveOffer("client_max_window_bits"));
            }
            Some(Some(bits)) => bits,
            None => self.client_max_window_bits,
        };
        if self.server_no_context_takeover && !p.server_no_context_takeover {
            return Err(NegotiationError::Ignored("server_no_context_takeover"));
        }
        Ok(Some(DeflateParams {
            server_no_context_takeover: p.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
            level: self.level,
            threshold: self.threshold,
        }))
    }
}

/// The parameters both ends agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server's compression window.
    pub server_max_window_bits: u8,
    /// The client's compression window.
    pub client_max_window_bits: u8,
    /// Our compression level.
    pub level: u32,
    /// Messages shorter than this are sent uncompressed.
    pub threshold: usize,
}

impl DeflateParams {
    /// The server's response, as a `Sec-WebSocket-Extensions` value.
    pub fn response_header(&self) -> String {
        let mut s = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            s.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if self.client_max_window_bits < 15 {
            s.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits
            ));
        }
        s
    }
}

/// A permessage-deflate offer or response that cannot be accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// A parameter appears twice.
    #[error("parameter {0} appears more than once")]
    DuplicateParameter(String),
    /// A window-bits value outside 8 to 15, or not a number.
    #[error("{name} has an invalid value {value:?}")]
    InvalidValue {
        /// The parameter.
        name: &'static str,
        /// The value given.
        value: String,
    },
    /// A parameter that takes no value was given one.
    #[error("{0} takes no value")]
    UnexpectedValue(&'static str),
    /// A parameter that needs a value was given none.
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    /// The server's response has a parameter the extension does not define.
    #[error("unknown permessage-deflate parameter in the response")]
    UnknownParameter,
    /// The server answered with permessage-deflate twice.
    #[error("permessage-deflate appears twice in the response")]
    Duplicate,
    /// The server chose a window larger than the client allowed.
    #[error("{0} in the response exceeds the offer")]
    WindowAboveOffer(&'static str),
    /// The server ignored a requirement of the offer.
    #[error("the response dropped {0}")]
    Ignored(&'static str),
}

/// The parameters of one offer or response, checked for form.
#[derive(Default)]
struct OfferedParams {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: the bare parameter (offer only).
    client_max_window_bits: Option<Option<u8>>,
    unknown: bool,
}

impl OfferedParams {
    fn parse(ext: &Extension) -> Result<Self, NegotiationError> {
        let mut p = Self::default();
        let mut seen: [bool; 4] = [false; 4];
        for (name, value) in &ext.params {
            let idx = match name.to_ascii_lowercase().as_str() {
                "server_no_context_takeover" => 0,
                "client_no_context_takeover" => 1,
                "server_max_window_bits" => 2,
                "client_max_window_bits" => 3,
                _ => {
                    p.unknown = true;
                    continue;
                }
            };
            if std::mem::replace(&mut seen[idx], true) {
                return Err(NegotiationError::DuplicateParameter(name.clone()));
            }
            match idx {
                0 | 1 => {
                    let pname = if idx == 0 {
                        "server_no_context_takeover"
                    } else {
                        "client_no_context_takeover"
                    };
                    if value.is_some() {
                        return Err(NegotiationError::UnexpectedValue(pname));
                    }
                    if idx == 0 {
                        p.server_no_context_takeover = true;
                    } else {
                        p.client_no_context_takeover = true;
                    }
                }
                2 => {
                    let v = value
                        .as_deref()
                        .ok_or(NegotiationError::MissingValue("server_max_window_bits"))?;
                    p.server_max_window_bits = Some(window_bits("server_max_window_bits", v)?);
                }
                _ => {
                    p.client_max_window_bits = Some(match value.as_deref() {
                        None => None,
                        Some(v) => Some(window_bits("client_max_window_bits", v)?),
                    });
                }
            }
        }
        Ok(p)
    }
}

/// Parses a window size: 1*DIGIT with no leading zero, 8 to 15.
fn window_bits(name: &'static str, value: &str) -> Result<u8, NegotiationError> {
    let invalid = || NegotiationError::InvalidValue {
        name,
        value: value.to_owned(),
    };
    if value.is_empty()
        || value.len() > 2
        || value.starts_with('0')
        || !value.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    match value.parse::<u8>() {
        Ok(bits @ 8..=15) => Ok(bits),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::parse_extensions;

    fn offers(header: &str) -> Vec<Extension> {
        parse_extensions(&[header]).unwrap()
    }

    #[test]
    fn accepts_the_default_browser_offer() {
        let p = DeflateConfig::default()
            .accept_offers(&offers("permessage-deflate; client_max_window_bits"))
            .unwrap()
            .unwrap();
        assert_eq!(p.response_header(), "permessage-deflate");
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (15, 15)
        );
    }

    #[test]
    fn honors_requested_windows_and_takeover() {
        let p = DeflateConfig::default()
            .accept_offers(&offers(
                "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9; server_no_context_takeover",
            ))
            .unwrap()
            .unwrap();
        assert_eq!(p.server_max_window_bits, 10);
        assert_eq!(p.client_max_window_bits, 9);
        assert!(p.server_no_context_takeover);
        assert_eq!(
            p.response_header(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9"
        );
    }

    #[test]
    fn skips_offers_with_unknown_parameters_and_takes_the_next() {
        let p = DeflateConfig::default()
            .accept_offers(&offers(
                "permessage-deflate; foo=1, permessage-deflate; client_no_context_takeover",
            ))
            .unwrap()
            .unwrap();
        assert!(p.client_no_context_takeover);
        assert_eq!(
            DeflateConfig::default().accept_offers(&offers("x-webkit-deflate-frame")),
            Ok(None)
        );
    }

    #[test]
    fn malformed_offers_are_errors() {
        for bad in [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=08",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        ] {
            assert!(
                DeflateConfig::default()
                    .accept_offers(&offers(bad))
                    .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn client_checks_the_response() {
        let cfg = DeflateConfig::default().client_max_window_bits(12);
        assert_eq!(
            cfg.client_offer(),
            "permessage-deflate; client_max_window_bits=12"
        );
        let ok = cfg
            .accept_response(&offers("permessage-deflate; client_max_window_bits=10"))
            .unwrap()
            .unwrap();
        assert_eq!(ok.client_max_window_bits, 10);
        assert!(
            cfg.accept_response(&offers("permessage-deflate; client_max_window_bits=13"))
                .is_err()
        );
        assert!(
            cfg.accept_response(&offers("permessage-deflate; bogus"))
                .is_err()
        );
        assert!(
            cfg.accept_response(&offers("permessage-deflate, permessage-deflate"))
                .is_err()
        );
        let none = DeflateConfig::default().client_max_window_bits(15);
        assert!(
            none.accept_response(&offers("permessage-deflate; client_max_window_bits"))
                .is_err()
        );
        assert_eq!(cfg.accept_response(&[]), Ok(None));
    }
}

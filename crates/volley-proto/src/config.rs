//! Connection configuration: every limit present, with a safe default, checked
//! once when the configuration is built.
//!
//! The defaults, and why, are in `docs/limits.md`.

use std::sync::Arc;
use std::time::Duration;

use crate::deflate::DeflateConfig;
use crate::error::ConfigError;

/// Default maximum message size: 16 MiB (Autobahn's 9.x cases need 16 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;
/// Default maximum frame size: 16 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 << 20;
/// Default close timeout: 10 s.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit on the whole request or response head: 16 KiB.
pub const DEFAULT_MAX_HEAD_SIZE: usize = 16 << 10;
/// Default limit on the number of header fields: 128.
pub const DEFAULT_MAX_HEADERS: usize = 128;

/// Limits on the opening handshake's HTTP head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// Maximum bytes of the request line or status line plus all header lines.
    pub max_head_size: usize,
    /// Maximum number of header fields.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_head_size: DEFAULT_MAX_HEAD_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

/// The configuration of one connection. Build it with [`Config::builder`];
/// [`Config::default`] holds the documented defaults.
///
/// ```
/// use std::time::Duration;
/// use volley_proto::{CloseCode, Config, Connection, Event, Message, Role};
///
/// let config = Config::builder()
///     .max_message_size(64 << 10)
///     .max_frame_size(64 << 10)
///     .close_timeout(Duration::from_secs(5))
///     .build()?;
/// // A server with this config refuses a 100 KiB message with 1009.
/// let mut client = Connection::new(Role::Client, Config::default(), None);
/// let mut server = Connection::new(Role::Server, config, None);
/// client.send(&Message::binary(vec![0u8; 100 << 10]))?;
/// let mut wire = Vec::new();
/// client.poll_transmit(&mut wire);
/// server.receive(&wire);
/// match server.poll_event() {
///     Some(Event::Failed(e)) => assert_eq!(e.close_code(), CloseCode::MESSAGE_TOO_BIG),
///     other => panic!("{other:?}"),
/// }
/// // Limits are checked when built.
/// assert!(Config::builder().max_message_size(0).build().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Cloning is cheap: the values are shared (every connection built from one
/// configuration points at them, so an idle connection carries a pointer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    values: Arc<Values>,
}

/// The values of a [`Config`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct Values {
    max_message_size: usize,
    max_frame_size: usize,
    close_timeout: Duration,
    head: HeadLimits,
    deflate: Option<DeflateConfig>,
}

impl Default for Values {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            head: HeadLimits::default(),
            deflate: cfg!(feature = "deflate").then(DeflateConfig::default),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            values: Arc::new(Values::default()),
        }
    }
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Values::default(),
        }
    }

    /// Largest message accepted, after reassembly and decompression.
    pub fn max_message_size(&self) -> usize {
        self.values.max_message_size
    }

    /// Largest single frame accepted.
    pub fn max_frame_size(&self) -> usize {
        self.values.max_frame_size
    }

    /// How long to wait for the peer's close frame after sending ours.
    pub fn close_timeout(&self) -> Duration {
        self.values.close_timeout
    }

    /// Limits on the opening handshake.
    pub fn head_limits(&self) -> HeadLimits {
        self.values.head
    }

    /// permessage-deflate settings; `None` when compression is neither
    /// offered nor accepted.
    pub fn deflate(&self) -> Option<&DeflateConfig> {
        self.values.deflate.as_ref()
    }
}

/// Builds a [`Config`], validating it in [`build`](Self::build).
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    config: Values,
}

impl ConfigBuilder {
    /// Largest message accepted, after reassembly and decompression.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Largest single frame accepted.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// Sets both the message and the frame limit.
    pub fn max_size(self, bytes: usize) -> Self {
        self.max_message_size(bytes).max_frame_size(bytes)
    }

    /// How long to wait for the peer's close frame after sending ours.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// Limits on the opening handshake.
    pub fn head_limits(mut self, limits: HeadLimits) -> Self {
        self.config.head = limits;
        self
    }

    /// permessage-deflate settings, or `None` to turn compression off.
    pub fn deflate(mut self, deflate: Option<DeflateConfig>) -> Self {
        self.config.deflate = deflate;
        self
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        let c = &self.config;
        if c.max_message_size == 0 {
            return Err(ConfigError::Zero("max_message_size"));
        }
        if c.max_frame_size == 0 {
            return Err(ConfigError::Zero("max_frame_size"));
        }
        if c.max_frame_size > c.max_message_size {
            return Err(ConfigError::FrameAboveMessage {
                frame: c.max_frame_size,
                message: c.max_message_size,
            });
        }
        if c.close_timeout.is_zero() {
            return Err(ConfigError::Zero("close_timeout"));
        }
        if c.head.max_head_size == 0 {
            return Err(ConfigError::Zero("max_head_size"));
        }
        if c.head.max_headers == 0 {
            return Err(ConfigError::Zero("max_headers"));
        }
        if let Some(d) = &c.deflate {
            if !cfg!(feature = "deflate") {
                return Err(ConfigError::DeflateUnavailable);
            }
            d.validate()?;
        }
        Ok(Config {
            values: Arc::new(self.config),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build_and_match_the_documented_values() {
        let c = Config::builder().build().unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.max_message_size(), 16 << 20);
        assert_eq!(c.close_timeout(), Duration::from_secs(10));
        assert_eq!(c.head_limits().max_headers, 128);
    }

    #[test]
    fn rejects_impossible_limits() {
        assert_eq!(
            Config::builder().max_message_size(0).build(),
            Err(ConfigError::Zero("max_message_size"))
        );
        assert!(matches!(
            Config::builder()
                .max_message_size(10)
                .max_frame_size(11)
                .build(),
            Err(ConfigError::FrameAboveMessage { .. })
        ));
        assert_eq!(
            Config::builder().close_timeout(Duration::ZERO).build(),
            Err(ConfigError::Zero("close_timeout"))
        );
    }
}

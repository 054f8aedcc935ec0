//! Configuration of the tokio layer, around the protocol core's [`Config`].

use std::sync::Arc;
use std::time::Duration;

pub use volley_proto::Keepalive;
use volley_proto::{Config, ConfigError};

/// Default write high-water mark: 128 KiB.
pub const DEFAULT_WRITE_HIGH_WATER_MARK: usize = 128 << 10;
/// Default handshake timeout: 10 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default read size: 64 KiB (one buffer per thread, shared by its connections).
pub const DEFAULT_READ_BUFFER_SIZE: usize = 64 << 10;

/// The configuration of a [`WebSocket`](crate::WebSocket).
///
/// Cloning is cheap: the values are shared (every connection built from one
/// configuration points at them, so an idle connection carries a pointer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSocketConfig {
    values: Arc<Values>,
}

/// The values of a [`WebSocketConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct Values {
    protocol: Config,
    write_high_water_mark: usize,
    handshake_timeout: Duration,
    read_buffer_size: usize,
    keepalive: Option<Keepalive>,
}

impl Default for Values {
    fn default() -> Self {
        Self {
            protocol: Config::default(),
            write_high_water_mark: DEFAULT_WRITE_HIGH_WATER_MARK,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
            keepalive: None,
        }
    }
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            values: Arc::new(Values::default()),
        }
    }
}

impl WebSocketConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> WebSocketConfigBuilder {
        WebSocketConfigBuilder {
            config: Values::default(),
        }
    }

    /// The protocol core's configuration (limits, close timeout, compression).
    pub fn protocol(&self) -> &Config {
        &self.values.protocol
    }

    /// `send`, `feed` and the `Sink` wait while more than this many bytes
    /// are buffered.
    pub fn write_high_water_mark(&self) -> usize {
        self.values.write_high_water_mark
    }

    /// Time allowed for the opening handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.values.handshake_timeout
    }

    /// Bytes read from the transport at a time, into a buffer shared by the
    /// connections of a thread.
    pub fn read_buffer_size(&self) -> usize {
        self.values.read_buffer_size
    }

    /// Keepalive pings, off by default.
    pub fn keepalive(&self) -> Option<Keepalive> {
        self.values.keepalive
    }
}

/// Builds a [`WebSocketConfig`], validated in [`build`](Self::build).
#[derive(Clone, Debug)]
pub struct WebSocketConfigBuilder {
    config: Values,
}

impl WebSocketConfigBuilder {
    /// The protocol core's configuration.
    pub fn protocol(mut self, protocol: Config) -> Self {
        self.config.protocol = protocol;
        self
    }

    /// The write high-water mark.
    pub fn write_high_water_mark(mut self, bytes: usize) -> Self {
        self.config.write_high_water_mark = bytes;
        self
    }

    /// The handshake timeout.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// The read buffer size.
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.config.read_buffer_size = bytes;
        self
    }

    /// Keepalive pings every `interval`; close with 1011 when a pong takes
    /// longer than `timeout`.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.keepalive = Some(Keepalive { interval, timeout });
        self
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<WebSocketConfig, ConfigError> {
        let c = &self.config;
        if c.handshake_timeout.is_zero() {
            return Err(ConfigError::Zero("handshake_timeout"));
        }
        if c.read_buffer_size == 0 {
            return Err(ConfigError::Zero("read_buffer_size"));
        }
        if let Some(k) = c.keepalive {
            if k.interval.is_zero() {
                return Err(ConfigError::Zero("keepalive interval"));
            }
            if k.timeout.is_zero() {
                return Err(ConfigError::Zero("keepalive timeout"));
            }
        }
        Ok(WebSocketConfig {
            values: Arc::new(self.config),
        })
    }
}

//! Configuration of the tokio layer, around the protocol core's [`Config`].

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSocketConfig {
    protocol: Config,
    write_high_water_mark: usize,
    handshake_timeout: Duration,
    read_buffer_size: usize,
    keepalive: Option<Keepalive>,
}

impl Default for WebSocketConfig {
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

impl WebSocketConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> WebSocketConfigBuilder {
        WebSocketConfigBuilder {
            config: Self::default(),
        }
    }

    /// The protocol core's configuration (limits, close timeout, compression).
    pub fn protocol(&self) -> &Config {
        &self.protocol
    }

    /// `send`, `feed` and the `Sink` wait while more than this many bytes
    /// are buffered.
    pub fn write_high_water_mark(&self) -> usize {
        self.write_high_water_mark
    }

    /// Time allowed for the opening handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Bytes read from the transport at a time, into a buffer shared by the
    /// connections of a thread.
    pub fn read_buffer_size(&self) -> usize {
        self.read_buffer_size
    }

    /// Keepalive pings, off by default.
    pub fn keepalive(&self) -> Option<Keepalive> {
        self.keepalive
    }
}

/// Builds a [`WebSocketConfig`], validated in [`build`](Self::build).
#[derive(Clone, Debug)]
pub struct WebSocketConfigBuilder {
    config: WebSocketConfig,
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
        Ok(self.config)
    }
}

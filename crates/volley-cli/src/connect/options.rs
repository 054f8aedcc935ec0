//! The connection flags shared by `volley connect`, `volley replay` and
//! `volley subscribe`, and the `ClientBuilder` they make.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use clap::Args;
use volley::{ClientBuilder, DeflateConfig, Proxy, WebSocketConfig};

/// How to reach the server: headers, auth, proxy, TLS, limits.
#[derive(Clone, Debug, Args)]
pub(crate) struct ClientArgs {
    /// Adds a request header (repeatable).
    /// Example: -H 'Cookie: session=abc' -H 'X-Trace: 1'
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub(crate) headers: Vec<String>,
    /// Offers a subprotocol in Sec-WebSocket-Protocol (repeatable, in order
    /// of preference). Example: --protocol graphql-ws
    #[arg(long = "protocol", value_name = "NAME")]
    pub(crate) protocols: Vec<String>,
    /// Sends an Origin header, as a browser would.
    /// Example: --origin https://app.example
    #[arg(long, value_name = "URL")]
    pub(crate) origin: Option<String>,
    /// HTTP Basic credentials for the server.
    /// Example: -u alice:s3cret
    #[arg(short = 'u', long, value_name = "USER:PASS")]
    pub(crate) user: Option<String>,
    /// Sends `Authorization: Bearer TOKEN`.
    /// Example: --bearer eyJhbGciOi...
    #[arg(long, value_name = "TOKEN")]
    pub(crate) bearer: Option<String>,
    /// Connects through a proxy: http://, https:// (HTTP CONNECT), socks5://
    /// (the client resolves names) or socks5h:// (the proxy resolves names),
    /// with optional credentials in the URL. Without it the curl variables
    /// https_proxy, http_proxy, all_proxy and no_proxy are honoured.
    /// Example: -x socks5h://user:pass@127.0.0.1:1080
    #[arg(short = 'x', long, value_name = "URL")]
    pub(crate) proxy: Option<String>,
    /// Credentials for the proxy (override those in the URL).
    /// Example: --proxy-user alice:s3cret
    #[arg(long, value_name = "USER:PASS")]
    pub(crate) proxy_user: Option<String>,
    /// Ignores the proxy environment variables.
    /// Example: --no-env-proxy
    #[arg(long)]
    pub(crate) no_env_proxy: bool,
    /// Trusts the CA certificates in a PEM file (repeatable), in addition to
    /// the built-in Mozilla roots. Example: --cacert ./test-ca.pem
    #[arg(long, value_name = "FILE")]
    pub(crate) cacert: Vec<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS; needs --key.
    /// Example: --cert client.pem --key client-key.pem
    #[arg(long, value_name = "FILE", requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    /// Example: --key client-key.pem
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// Accepts any server certificate. For testing only: anyone on the path
    /// can read and change the traffic. Example: -k
    #[arg(short = 'k', long)]
    pub(crate) insecure: bool,
    /// Offers permessage-deflate compression.
    /// Example: --compress
    #[arg(long)]
    pub(crate) compress: bool,
    /// Sends a ping this often and drops the connection when the pong is
    /// later than that again (units: ms, s, m; a bare number is seconds).
    /// Example: --ping-interval 20s
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) ping_interval: Option<Duration>,
    /// Largest message accepted from the server, in bytes.
    /// Example: --max-message-size 1048576
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub(crate) max_message_size: usize,
    /// Time allowed for the proxy, TCP and TLS setup (units: ms, s, m).
    /// Example: --connect-timeout 3s
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub(crate) connect_timeout: Duration,
}

/// Parses `500ms`, `3s`, `2m` or a bare number of seconds (`1.5`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (examples: 500ms, 3s, 2m)"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{s:?}: {e}"))
}

fn read(path: &PathBuf) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

impl ClientArgs {
    /// A `ClientBuilder` for `url` with these flags, plus `extra_protocols`.
    pub(crate) fn builder(
        &self,
        url: &str,
        extra_protocols: &[&str],
    ) -> Result<ClientBuilder, Box<dyn std::error::Error>> {
        let deflate = self.compress.then(DeflateConfig::default);
        let protocol = volley::Config::builder()
            .max_size(self.max_message_size)
            .deflate(deflate)
            .build()?;
        let mut config = WebSocketConfig::builder().protocol(protocol);
        if let Some(interval) = self.ping_interval {
            config = config.keepalive(interval, interval);
        }
        let mut builder = ClientBuilder::new(url)
            .config(config.build()?)
            .connect_timeout(self.connect_timeout);
        for header in &self.headers {
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| format!("header {header:?}: expected 'Name: value'"))?;
            builder = builder.header(name.trim(), value.trim())?;
        }
        if let Some(origin) = &self.origin {
            builder = builder.header("Origin", origin)?;
        }
        if let Some(user) = &self.user {
            let token = base64::engine::general_purpose::STANDARD.encode(user);
            builder = builder.header("Authorization", &format!("Basic {token}"))?;
        }
        if let Some(token) = &self.bearer {
            builder = builder.header("Authorization", &format!("Bearer {token}"))?;
        }
        for p in self
            .protocols
            .iter()
            .map(String::as_str)
            .chain(extra_protocols.iter().copied())
        {
            builder = builder.protocol(p);
        }
        match &self.proxy {
            Some(url) => {
                let mut proxy = Proxy::parse(url)?;
                if let Some(credentials) = &self.proxy_user {
                    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
                    proxy = proxy.credentials(user, password);
                }
                builder = builder.proxy(proxy);
            }
            None if !self.no_env_proxy => builder = builder.proxy_from_env(),
            None => {}
        }
        for path in &self.cacert {
            builder = builder.add_root_certificates_pem(&read(path)?)?;
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            builder = builder.client_certificate_pem(&read(cert)?, &read(key)?)?;
        }
        if self.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
    }
}

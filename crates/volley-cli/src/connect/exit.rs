//! The exit codes of `volley connect`: how the connection ended.

use std::process::ExitCode;

use volley::{Error, ProxyError};

/// How a `volley connect` session ended; each has its own exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// 0: closed normally (code 1000 or no code), by either side, or input
    /// ended and the closing handshake finished.
    Normal,
    /// 1: another error (a file, a bad flag value); `volley replay`: the
    /// server's replies differ from the record.
    Failure,
    /// 3: no connection: DNS, TCP, TLS, or the connect timeout.
    ConnectFailed,
    /// 4: the server refused the WebSocket handshake (a status other than
    /// 101, or a broken answer).
    HandshakeRefused,
    /// 5: the proxy failed: unreachable, CONNECT refused, timed out.
    ProxyFailed,
    /// 6: the proxy refused the credentials, or wants some.
    ProxyAuth,
    /// 7: the server closed with a code other than 1000.
    ClosedWithError,
    /// 8: the connection was lost without a closing handshake (reset, EOF,
    /// protocol error, ping timeout).
    Dropped,
    /// 130: interrupted (Ctrl-C).
    Interrupted,
}

/// The exit code table, for `--help` and docs/cli.md.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes (how the connection ended):
  0    closed normally (1000) by either side, or input ended and the close finished
  1    other error; `volley replay`: the replies differ from the record
  2    bad command line
  3    could not connect (DNS, TCP, TLS, --connect-timeout)
  4    the server refused the WebSocket handshake (e.g. 403, 404)
  5    the proxy failed (unreachable, CONNECT refused, timed out)
  6    the proxy refused the credentials
  7    the server closed with a code other than 1000
  8    the connection dropped without a close (reset, protocol error, ping timeout)
  130  interrupted (Ctrl-C)";

impl Ending {
    /// The process exit code.
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Normal => 0,
            Self::Failure => 1,
            Self::ConnectFailed => 3,
            Self::HandshakeRefused => 4,
            Self::ProxyFailed => 5,
            Self::ProxyAuth => 6,
            Self::ClosedWithError => 7,
            Self::Dropped => 8,
            Self::Interrupted => 130,
        }
    }

    /// How a failed connection attempt ends.
    pub(crate) fn of_connect_error(e: &Error) -> Self {
        match e {
            Error::Proxy(ProxyError::AuthFailed { .. }) => Self::ProxyAuth,
            Error::Proxy(_) => Self::ProxyFailed,
            Error::Response(_) | Error::Request(_) | Error::HandshakeTimeout => {
                Self::HandshakeRefused
            }
            Error::Url(_) | Error::Config(_) | Error::TlsSetup(_) => Self::Failure,
            _ => Self::ConnectFailed,
        }
    }

    /// How a connection that was up ends, from the close code the peer sent
    /// (None: no Close frame).
    pub(crate) fn of_close(code: Option<u16>) -> Self {
        match code {
            Some(1000) | Some(1005) => Self::Normal,
            Some(_) => Self::ClosedWithError,
            None => Self::Dropped,
        }
    }
}

impl From<Ending> for ExitCode {
    fn from(e: Ending) -> Self {
        ExitCode::from(e.code())
    }
}

//! The rustls crypto provider Volley's TLS uses.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The rustls crypto provider for Volley's TLS (the `wss://` client, and
/// `volley serve`): the process default when the application installed one
/// (`CryptoProvider::install_default`, for example aws-lc-rs, whose key
/// exchange is post-quantum), else *ring*, which is built in.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    if let Some(installed) = CryptoProvider::get_default() {
        return Arc::clone(installed);
    }
    // rustls 0.23.48 deprecates its ring provider because ring has no
    // post-quantum key exchange. It stays our built-in fallback (no C
    // toolchain needed to build); an application that wants post-quantum key
    // exchange installs aws-lc-rs as the process default, used above.
    // `allow`, not `expect`: with a rustls older than 0.23.48 (a lockfile
    // that has not been updated) nothing is deprecated and `expect` would warn.
    #[allow(deprecated, reason = "see above: ring is the fallback, not the choice")]
    let ring = rustls::crypto::ring::default_provider();
    Arc::new(ring)
}

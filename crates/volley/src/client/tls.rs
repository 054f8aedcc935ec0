//! The client's TLS options: the trusted roots (webpki-roots plus extra PEM
//! certificates), a client certificate for mutual TLS, and the testing-only
//! switch that accepts any server certificate.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Why a TLS option could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// A PEM input could not be read.
    #[error("{what}: invalid PEM: {source}")]
    Pem {
        /// What was being read (`root certificates`, `client key`, ...).
        what: &'static str,
        /// The parser's error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM input held no item of the expected kind.
    #[error("{what}: no PEM item found")]
    Empty {
        /// What was being read.
        what: &'static str,
    },
    /// rustls refused the certificate, key or configuration.
    #[error("{what}: {source}")]
    Rustls {
        /// What was being set up.
        what: &'static str,
        /// rustls's error.
        #[source]
        source: rustls::Error,
    },
}

/// The TLS options a [`ClientBuilder`](crate::ClientBuilder) collects; the
/// rustls configuration is built from them when a connection needs TLS.
#[derive(Default)]
pub(crate) struct TlsOptions {
    extra_roots: Vec<CertificateDer<'static>>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    accept_invalid_certs: bool,
}

impl Clone for TlsOptions {
    fn clone(&self) -> Self {
        Self {
            extra_roots: self.extra_roots.clone(),
            identity: self
                .identity
                .as_ref()
                .map(|(chain, key)| (chain.clone(), key.clone_key())),
            accept_invalid_certs: self.accept_invalid_certs,
        }
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("extra_roots", &self.extra_roots.len())
            .field("client_certificate", &self.identity.is_some())
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .finish()
    }
}

impl TlsOptions {
    /// Adds every certificate of a PEM bundle to the trusted roots.
    pub(crate) fn add_roots_pem(&mut self, pem: &[u8]) -> Result<(), TlsSetupError> {
        let what = "root certificates";
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsSetupError::Pem { what, source })?;
        if certs.is_empty() {
            return Err(TlsSetupError::Empty { what });
        }
        self.extra_roots.extend(certs);
        Ok(())
    }

    /// Sets the client certificate chain and its private key (PEM).
    pub(crate) fn identity_pem(&mut self, chain: &[u8], key: &[u8]) -> Result<(), TlsSetupError> {
        let chain = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsSetupError::Pem {
                what: "client certificate",
                source,
            })?;
        if chain.is_empty() {
            return Err(TlsSetupError::Empty {
                what: "client certificate",
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|source| match source {
            rustls::pki_types::pem::Error::NoItemsFound => {
                TlsSetupError::Empty { what: "client key" }
            }
            source => TlsSetupError::Pem {
                what: "client key",
                source,
            },
        })?;
        self.identity = Some((chain, key));
        Ok(())
    }

    pub(crate) fn accept_invalid_certs(&mut self, accept: bool) {
        self.accept_invalid_certs = accept;
    }

    /// The rustls configuration for these options.
    pub(crate) fn build(&self) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsSetupError::Rustls {
                what: "protocol versions",
                source,
            })?;
        let builder = if self.accept_invalid_certs {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        } else {
            let mut roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            for cert in &self.extra_roots {
                roots
                    .add(cert.clone())
                    .map_err(|source| TlsSetupError::Rustls {
                        what: "root certificate",
                        source,
                    })?;
            }
            builder.with_root_certificates(roots)
        };
        let config = match &self.identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|source| TlsSetupError::Rustls {
                    what: "client certificate",
                    source,
                })?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

fn provider() -> Arc<CryptoProvider> {
    crate::crypto::crypto_provider()
}

/// Accepts any server certificate (the handshake's signatures are still
/// checked). Only for `danger_accept_invalid_certs`.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

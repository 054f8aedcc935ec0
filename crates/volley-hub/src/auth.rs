//! Connection and subscription tokens: JWTs signed with HS256, RS256 or ES256
//! (docs/protocol.md §9).

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::{AuthConfig, ConfigError};

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// Malformed, bad signature, disallowed algorithm, bad claims (error 101).
    #[error("invalid token")]
    Invalid,
    /// `exp` has passed (error 109).
    #[error("token expired")]
    Expired,
}

/// The claims of a connection token that the hub uses.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct ConnectClaims {
    /// The user id.
    pub sub: String,
    /// Session expiry (seconds since the epoch).
    #[serde(default)]
    pub exp: Option<u64>,
    /// Shown to others as `conn_info`.
    #[serde(default)]
    pub info: Option<Arc<RawValue>>,
    /// When present, the only channels this connection may subscribe to.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
}

/// The claims of a subscription token.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct SubscribeClaims {
    /// Must equal the connection's user.
    pub sub: String,
    /// Must equal the channel. (`exp` is checked at subscribe time only, by
    /// the verification.)
    pub channel: String,
    /// Shown to others as `chan_info`.
    #[serde(default)]
    pub info: Option<Arc<RawValue>>,
}

/// Verifies tokens with the configured keys. Only algorithms with a key of
/// the matching type are accepted, so an HMAC token is never checked against
/// an RSA key used as a secret, and `none` never is.
#[derive(Clone)]
pub(crate) struct TokenVerifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    audience: Option<String>,
    issuer: Option<String>,
    leeway: u64,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algs: Vec<_> = self.keys.iter().map(|(a, _)| *a).collect();
        f.debug_struct("TokenVerifier")
            .field("algorithms", &algs)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// Loads the keys named in the configuration.
    pub(crate) fn new(config: &AuthConfig) -> Result<Self, ConfigError> {
        let mut keys = Vec::new();
        if let Some(secret) = &config.hmac_secret {
            if secret.len() < 16 {
                return Err(ConfigError::Key(
                    "auth.hmac_secret: use at least 16 bytes (32 random bytes recommended)".into(),
                ));
            }
            keys.push((
                Algorithm::HS256,
                DecodingKey::from_secret(secret.as_bytes()),
            ));
        }
        if let Some(path) = &config.rsa_public_key {
            let pem = read_key(path)?;
            let key = DecodingKey::from_rsa_pem(&pem)
                .map_err(|e| ConfigError::Key(format!("{}: {e}", path.display())))?;
            keys.push((Algorithm::RS256, key));
        }
        if let Some(path) = &config.ec_public_key {
            let pem = read_key(path)?;
            let key = DecodingKey::from_ec_pem(&pem)
                .map_err(|e| ConfigError::Key(format!("{}: {e}", path.display())))?;
            keys.push((Algorithm::ES256, key));
        }
        Ok(Self {
            keys,
            audience: config.audience.clone(),
            issuer: config.issuer.clone(),
            leeway: config.leeway,
        })
    }

    /// Verifies a connection token.
    pub(crate) fn connect(&self, token: &str) -> Result<ConnectClaims, TokenError> {
        let claims: ConnectClaims = self.verify(token)?;
        if claims.sub.is_empty() || claims.sub.len() > 256 {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    /// Verifies a subscription token for `user` and `channel`.
    pub(crate) fn subscribe(
        &self,
        token: &str,
        user: &str,
        channel: &str,
    ) -> Result<SubscribeClaims, TokenError> {
        let claims: SubscribeClaims = self.verify(token)?;
        if claims.sub != user || claims.channel != channel {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    fn verify<T: for<'de> Deserialize<'de>>(&self, token: &str) -> Result<T, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let (alg, key) = self
            .keys
            .iter()
            .find(|(alg, _)| *alg == header.alg)
            .ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(*alg);
        validation.leeway = self.leeway;
        validation.required_spec_claims.clear();
        validation.validate_nbf = true;
        validation.validate_aud = false;
        if let Some(aud) = &self.audience {
            validation.set_audience(&[aud]);
            validation.validate_aud = true;
            validation.required_spec_claims.insert("aud".into());
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        jsonwebtoken::decode::<T>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

fn read_key(path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Signs an HS256 token (the demo's `/demo/token`, and tests).
pub fn sign_hs256(secret: &str, claims: &serde_json::Value) -> Option<String> {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(&AuthConfig {
            hmac_secret: Some(SECRET.into()),
            ..AuthConfig::default()
        })
        .unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn connect_tokens() {
        let v = verifier();
        let t = sign_hs256(SECRET, &json!({"sub": "42", "info": {"name": "Ada"}})).unwrap();
        let c = v.connect(&t).unwrap();
        assert_eq!(c.sub, "42");
        assert_eq!(c.exp, None);
        assert_eq!(c.info.unwrap().get(), r#"{"name":"Ada"}"#);

        let t = sign_hs256(SECRET, &json!({"sub": "42", "exp": now() + 60})).unwrap();
        assert!(v.connect(&t).is_ok());
        let t = sign_hs256(SECRET, &json!({"sub": "42", "exp": now() - 5})).unwrap();
        assert_eq!(v.connect(&t).unwrap_err(), TokenError::Expired);
        let t = sign_hs256(SECRET, &json!({"sub": ""})).unwrap();
        assert_eq!(v.connect(&t).unwrap_err(), TokenError::Invalid);
        let t = sign_hs256("another secret of enough length", &json!({"sub": "1"})).unwrap();
        assert_eq!(v.connect(&t).unwrap_err(), TokenError::Invalid);
        assert_eq!(v.connect("a.b.c").unwrap_err(), TokenError::Invalid);
        // alg "none" never verifies.
        let none = format!(
            "{}.{}.",
            base64_url(r#"{"alg":"none","typ":"JWT"}"#),
            base64_url(r#"{"sub":"42"}"#)
        );
        assert_eq!(v.connect(&none).unwrap_err(), TokenError::Invalid);
    }

    #[test]
    fn subscription_tokens_bind_user_and_channel() {
        let v = verifier();
        let t = sign_hs256(SECRET, &json!({"sub": "42", "channel": "$orders:42"})).unwrap();
        assert!(v.subscribe(&t, "42", "$orders:42").is_ok());
        assert_eq!(
            v.subscribe(&t, "7", "$orders:42").unwrap_err(),
            TokenError::Invalid
        );
        assert_eq!(
            v.subscribe(&t, "42", "$orders:7").unwrap_err(),
            TokenError::Invalid
        );
    }

    fn base64_url(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }
}

//! Connection and subscription tokens: JWTs (docs/protocol.md §9), checked
//! with configured keys (selected by `kid` when the token names one) and the
//! keys of a JWKS URL.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation, errors::ErrorKind};
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

/// A verification key: its algorithm and, when it has one, its `kid`.
#[derive(Clone)]
pub(crate) struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Verifies tokens with the configured keys and those of the JWKS URL. Only
/// a key's own algorithm is accepted, so an HMAC token is never checked
/// against an RSA key used as a secret, and `none` never is. A token whose
/// header names a `kid` is checked with that key only; one without a `kid`
/// with each key of its algorithm.
#[derive(Clone)]
pub(crate) struct TokenVerifier {
    keys: Vec<Key>,
    jwks: Option<Arc<crate::jwks::Jwks>>,
    audience: Option<String>,
    issuer: Option<String>,
    leeway: u64,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algs: Vec<_> = self.keys.iter().map(|k| k.alg).collect();
        f.debug_struct("TokenVerifier")
            .field("algorithms", &algs)
            .field("jwks", &self.jwks.is_some())
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// Loads the keys named in the configuration (the JWKS is fetched later,
    /// by [`crate::jwks::Jwks::run`]).
    pub(crate) fn new(config: &AuthConfig) -> Result<Self, ConfigError> {
        let mut keys = Vec::new();
        if let Some(secret) = &config.hmac_secret {
            keys.push(Key {
                kid: None,
                alg: Algorithm::HS256,
                key: hmac_key("auth.hmac_secret", secret)?,
            });
        }
        if let Some(path) = &config.rsa_public_key {
            keys.push(Key {
                kid: None,
                alg: Algorithm::RS256,
                key: pem_key(path, Algorithm::RS256)?,
            });
        }
        if let Some(path) = &config.ec_public_key {
            keys.push(Key {
                kid: None,
                alg: Algorithm::ES256,
                key: pem_key(path, Algorithm::ES256)?,
            });
        }
        for k in &config.keys {
            let alg: Algorithm = k.alg.parse().map_err(|_| {
                ConfigError::Key(format!("auth.keys {:?}: unknown alg {:?}", k.kid, k.alg))
            })?;
            let key = match (alg.family(), &k.secret, &k.public_key) {
                (AlgorithmFamily::Hmac, Some(secret), None) => {
                    hmac_key(&format!("auth.keys {:?}: secret", k.kid), secret)?
                }
                (AlgorithmFamily::Hmac, _, _) => {
                    return Err(ConfigError::Key(format!(
                        "auth.keys {:?}: {} takes a secret (and no public_key)",
                        k.kid, k.alg
                    )));
                }
                (_, None, Some(path)) => pem_key(path, alg)?,
                _ => {
                    return Err(ConfigError::Key(format!(
                        "auth.keys {:?}: {} takes a public_key file (and no secret)",
                        k.kid, k.alg
                    )));
                }
            };
            keys.push(Key {
                kid: Some(k.kid.clone()),
                alg,
                key,
            });
        }
        let jwks = config
            .jwks_url
            .as_deref()
            .map(|url| crate::jwks::Jwks::new(url, config).map(Arc::new))
            .transpose()?;
        Ok(Self {
            keys,
            jwks,
            audience: config.audience.clone(),
            issuer: config.issuer.clone(),
            leeway: config.leeway,
        })
    }

    /// The JWKS source, when `auth.jwks_url` is set.
    pub(crate) fn jwks(&self) -> Option<&Arc<crate::jwks::Jwks>> {
        self.jwks.as_ref()
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
        let fetched = self.jwks.as_ref().map(|j| j.keys()).unwrap_or_default();
        let kid = header.kid.as_deref();
        let mut candidates = self
            .keys
            .iter()
            .chain(fetched.iter())
            .filter(|k| k.alg == header.alg && (kid.is_none() || k.kid.as_deref() == kid))
            .peekable();
        if candidates.peek().is_none() {
            if let (Some(kid), Some(jwks)) = (kid, &self.jwks) {
                jwks.unknown_kid(kid);
            }
            return Err(TokenError::Invalid);
        }
        let mut outcome = Err(TokenError::Invalid);
        for key in candidates {
            match self.verify_with::<T>(token, key) {
                Ok(claims) => return Ok(claims),
                // The signature held: the token is this key's, and expired.
                Err(TokenError::Expired) => outcome = Err(TokenError::Expired),
                Err(TokenError::Invalid) => {}
            }
        }
        outcome
    }

    fn verify_with<T: for<'de> Deserialize<'de>>(
        &self,
        token: &str,
        key: &Key,
    ) -> Result<T, TokenError> {
        let mut validation = Validation::new(key.alg);
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
        jsonwebtoken::decode::<T>(token, &key.key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

impl Key {
    /// A key of a JWKS document, or `None` for one the hub cannot use (no
    /// usable algorithm, a symmetric key, a key for encryption only).
    pub(crate) fn from_jwk(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Self> {
        use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, PublicKeyUse};
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return None;
        }
        let alg = match (jwk.common.key_algorithm, &jwk.algorithm) {
            (_, AlgorithmParameters::OctetKey(_)) => return None,
            (Some(alg), _) => Algorithm::try_from(alg).ok()?,
            (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
            (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return None,
            },
            (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
            (None, _) => return None,
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(Self {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        })
    }
}

fn hmac_key(name: &str, secret: &str) -> Result<DecodingKey, ConfigError> {
    if secret.len() < 16 {
        return Err(ConfigError::Key(format!(
            "{name}: use at least 16 bytes (32 random bytes recommended)"
        )));
    }
    DecodingKey::from_secret(secret.as_bytes())
        .map_err(|e| ConfigError::Key(format!("{name}: {e}")))
}

fn pem_key(path: &std::path::Path, alg: Algorithm) -> Result<DecodingKey, ConfigError> {
    let pem = read_key(path)?;
    let key = match alg.family() {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(&pem),
        _ => {
            return Err(ConfigError::Key(format!(
                "{}: {alg:?} takes a secret",
                path.display()
            )));
        }
    };
    key.map_err(|e| ConfigError::Key(format!("{}: {e}", path.display())))
}

fn read_key(path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Signs an HS256 token (the demo's `/demo/token`, and tests).
pub fn sign_hs256(secret: &str, claims: &serde_json::Value) -> Option<String> {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).ok()?;
    jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), claims, &key).ok()
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

    /// Several keys of one algorithm: a token's `kid` picks one; without a
    /// `kid`, each key of its algorithm is tried.
    #[test]
    fn kid_selects_among_keys_of_one_algorithm() {
        let old = "old secret of thirty-two bytes!!";
        let new = "new secret of thirty-two bytes!!";
        let key = |kid: &str, secret: &str| crate::config::KeyConfig {
            kid: kid.into(),
            alg: "HS256".into(),
            secret: Some(secret.into()),
            public_key: None,
        };
        let v = TokenVerifier::new(&AuthConfig {
            keys: vec![key("2026-01", old), key("2026-02", new)],
            ..AuthConfig::default()
        })
        .unwrap();
        let sign = |kid: Option<&str>, secret: &str| {
            let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
            header.kid = kid.map(str::to_owned);
            let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap();
            jsonwebtoken::encode(&header, &json!({"sub": "42"}), &key).unwrap()
        };
        assert!(v.connect(&sign(Some("2026-01"), old)).is_ok());
        assert!(v.connect(&sign(Some("2026-02"), new)).is_ok());
        assert!(v.connect(&sign(None, new)).is_ok());
        assert_eq!(
            v.connect(&sign(Some("2026-01"), new)).unwrap_err(),
            TokenError::Invalid
        );
        assert_eq!(
            v.connect(&sign(Some("2025-12"), new)).unwrap_err(),
            TokenError::Invalid
        );
        // A key's algorithm is its own: an RS256 entry needs a public key.
        let bad = TokenVerifier::new(&AuthConfig {
            keys: vec![crate::config::KeyConfig {
                alg: "RS256".into(),
                ..key("r", old)
            }],
            ..AuthConfig::default()
        });
        assert!(matches!(bad, Err(ConfigError::Key(_))));
    }

    fn base64_url(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }
}

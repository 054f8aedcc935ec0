//! Tokens signed with RS256 and ES256 keys, algorithm confusion, and the hub
//! over TLS (https:// and wss://).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use volley::ClientBuilder;

fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

#[tokio::test]
async fn rs256_and_es256_tokens_only_with_their_keys() {
    let mut cfg = config();
    cfg.allow_anonymous = false;
    cfg.auth.rsa_public_key = Some(key_path("rsa.pub.pem"));
    cfg.auth.ec_public_key = Some(key_path("ec.pub.pem"));
    let hub = TestHub::start(cfg).await;
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(key_path("rsa.key.pem")).unwrap()).unwrap();
    let ec = EncodingKey::from_ec_pem(&std::fs::read(key_path("ec.key.pem")).unwrap()).unwrap();

    let t = sign(Algorithm::RS256, &rsa, json!({"sub": "rsa-user"}));
    assert_eq!(
        Client::with_token(&hub, Some(&t)).await.info["user"],
        "rsa-user"
    );
    let t = sign(Algorithm::ES256, &ec, json!({"sub": "ec-user"}));
    assert_eq!(
        Client::with_token(&hub, Some(&t)).await.info["user"],
        "ec-user"
    );
    assert_eq!(
        Client::with_token(&hub, Some(&token(json!({"sub": "hs"}))))
            .await
            .info["user"],
        "hs"
    );

    // Algorithm confusion: an HS256 token whose secret is the RSA public key
    // must not verify (the RSA key is only used for RS256).
    let public_pem = std::fs::read(key_path("rsa.pub.pem")).unwrap();
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_pem).unwrap(),
        json!({"sub": "x"}),
    );
    let mut c = Client::open(&hub).await;
    assert_eq!(
        error_code(&c.call("connect", json!({"token": confused})).await),
        Some(101)
    );
    // A token signed by another EC key.
    let other = rcgen::KeyPair::generate().unwrap();
    let other = EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap();
    let t = sign(Algorithm::ES256, &other, json!({"sub": "x"}));
    let mut c = Client::open(&hub).await;
    assert_eq!(
        error_code(&c.call("connect", json!({"token": t})).await),
        Some(101)
    );
}

#[tokio::test]
async fn serves_wss_and_https() {
    let (cfg, cert, dir) = tls_config("tls");
    let hub = TestHub::start(cfg).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = volley::crypto_provider();
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let url = format!("wss://localhost:{}/connection/websocket", hub.addr.port());
    let (mut ws, _) = ClientBuilder::new(url)
        .protocol("volley.v1")
        .tls_config(Arc::new(client_config))
        .connect()
        .await
        .unwrap();
    ws.send(r#"{"id":1,"method":"connect"}"#).await.unwrap();
    let reply = ws.recv().await.unwrap().unwrap();
    let reply: serde_json::Value = serde_json::from_slice(reply.as_bytes()).unwrap();
    assert_eq!(reply["id"], 1);
    assert!(reply["result"]["client"].is_string(), "{reply}");
    // Publications queued to it together (joined into one entry) are
    // written by its task through TLS: each arrives, in order, once.
    let mut c = Client::over(ws);
    c.subscribe(serde_json::json!({"channel": "plain:burst"}))
        .await;
    hub.burst("plain:burst", 50).await;
    for i in 0..50 {
        assert_eq!(c.push().await["data"], i);
    }
    // Plain HTTP to a TLS port gets nothing useful.
    let (status, _) = tokio::time::timeout(WAIT, async {
        let mut s = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        (buf.starts_with(b"HTTP/1.1 200"), ())
    })
    .await
    .unwrap();
    assert!(!status, "no plain-text answer on the TLS port");
    std::fs::remove_dir_all(&dir).unwrap();
}

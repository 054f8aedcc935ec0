//! The demo: the dashboard and chat page at `/`, demo tokens for the chat
//! (`/demo/token`) and a ticker publishing to [`TICKER_CHANNEL`]. The library
//! never runs it by itself: an application adds it with
//! [`Server::with_demo`](crate::Server::with_demo), as `volley serve` does
//! when its configuration says `demo = true` (and always without one).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rand::Rng;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::assets;
use crate::hub::Hub;

/// The dashboard's channel.
pub(crate) const TICKER_CHANNEL: &str = "ticker:demo";
/// How often the ticker publishes.
const TICKER_INTERVAL: Duration = Duration::from_millis(500);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The demo's pages: `/` and `/demo/token`.
pub(crate) fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/", get(|| async { assets::page(assets::INDEX_HTML) }))
        .route("/demo/token", get(demo_token))
}

/// Publishes a random walk to [`TICKER_CHANNEL`] until the task is dropped.
pub(crate) async fn ticker(hub: Arc<Hub>) {
    let mut price = 100.0f64;
    let mut interval = tokio::time::interval(TICKER_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        let step: f64 = rand::rng().random_range(-1.0..1.0);
        price = (price + step).clamp(50.0, 150.0);
        let json = format!(
            "{{\"t\":{},\"price\":{:.2}}}",
            unix_ms(),
            (price * 100.0).round() / 100.0
        );
        if let Ok(data) = RawValue::from_string(json)
            && let Err(e) = hub.publish(TICKER_CHANNEL, data).await
        {
            tracing::warn!("demo ticker: {e:?}");
        }
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    #[serde(default)]
    name: Option<String>,
}

async fn demo_token(State(hub): State<Arc<Hub>>, Query(q): Query<TokenQuery>) -> Response {
    match token(&hub, q.name.as_deref().unwrap_or("guest")) {
        Some(token) => crate::http::ok_plain(&serde_json::json!({ "token": token })),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the demo needs auth.hmac_secret\n",
        )
            .into_response(),
    }
}

/// A one-hour HS256 connection token for a demo user called `name`.
fn token(hub: &Hub, name: &str) -> Option<String> {
    let secret = hub.config().auth.hmac_secret.as_deref()?;
    let name: String = name.trim().chars().take(32).collect();
    let name = if name.is_empty() {
        "guest".into()
    } else {
        name
    };
    let user = format!("demo-{:08x}", rand::random::<u32>());
    let claims = serde_json::json!({
        "sub": user,
        "exp": unix_ms() / 1000 + 3600,
        "info": { "name": name },
    });
    crate::auth::sign_hs256(secret, &claims)
}

//! The demo: a ticker publisher for the dashboard and demo tokens for the
//! chat (`/demo/token`), on when the configuration says `demo = true` (and
//! always when `volley serve` runs without a configuration).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::value::RawValue;

use crate::hub::Hub;

/// The dashboard's channel.
pub const TICKER_CHANNEL: &str = "ticker:demo";
/// How often the ticker publishes.
pub const TICKER_INTERVAL: Duration = Duration::from_millis(500);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Publishes a random walk to [`TICKER_CHANNEL`] until the task is dropped.
pub async fn ticker(hub: Arc<Hub>) {
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
        if let Ok(data) = RawValue::from_string(json) {
            if let Err(e) = hub.publish(TICKER_CHANNEL, data).await {
                tracing::warn!("demo ticker: {e:?}");
            }
        }
    }
}

/// A one-hour HS256 connection token for a demo user called `name`.
pub fn token(hub: &Hub, name: &str) -> Option<String> {
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

//! The HTTP side of the hub: the WebSocket endpoint, the fallback
//! transports' endpoints (`crate::fallback`), the API for application
//! backends (docs/http-api.md), metrics, health, the demo and admin pages.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use futures_util::FutureExt;
use futures_util::future::{Either, join_all};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use volley::{Accept, Rejection};

use crate::assets;
use crate::commands;
use crate::direct::Io;
use crate::fallback;
use crate::hub::{Admission, Hub, Target};
use crate::metrics::TransportLabels;
use crate::protocol::{self, ErrorCode, PATH, SUBPROTOCOL};
use crate::session;

/// The client's IP address, put into every request's extensions by the
/// server: the peer's, or the one a trusted proxy relays (PROXY protocol,
/// `X-Forwarded-For`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RemoteIp(pub IpAddr);

/// The router of every HTTP endpoint; `extra` adds routes (the demo's).
pub(crate) fn router(hub: Arc<Hub>, extra: Option<Router<Arc<Hub>>>) -> Router {
    let base = match extra {
        Some(extra) => extra,
        None => Router::new().route("/", get(index)),
    };
    // GET: an HTTP/1.1 upgrade; CONNECT: HTTP/2 extended CONNECT (RFC 8441).
    let fallbacks = Router::new()
        .route("/connection/sse", get(fallback::sse))
        .route(
            "/connection/poll",
            get(fallback::poll).post(fallback::poll_open),
        )
        .route("/connection/send", post(fallback::send))
        .route("/connection/session", delete(fallback::close))
        .layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            fallback::cors,
        ));
    base.route(PATH, get(websocket).connect(websocket))
        .merge(fallbacks)
        .route("/api/{method}", post(api))
        .route("/metrics", get(metrics))
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .route("/admin", get(|| async { assets::page(assets::ADMIN_HTML) }))
        .route("/admin/api/stats", get(admin_stats))
        .route(
            "/volley.js",
            get(|| async { assets::script(assets::VOLLEY_JS) }),
        )
        .route("/assets/{name}", get(asset))
        .with_state(hub)
}

/// The client's address the server recorded for this request.
pub(crate) fn remote_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<RemoteIp>()
        .map(|r| r.0)
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// The answer to a connection the hub does not admit (a WebSocket
/// handshake, or a new fallback session): 503 or 429, with `Retry-After`.
pub(crate) fn refuse(hub: &Hub, why: Admission, ip: IpAddr) -> Response {
    let (status, reason, body) = match why {
        Admission::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining", "draining\n"),
        Admission::NodeFull => (
            StatusCode::SERVICE_UNAVAILABLE,
            "connection_limit",
            "too many connections\n",
        ),
        Admission::IpFull => (
            StatusCode::TOO_MANY_REQUESTS,
            "ip_limit",
            "too many connections from this address\n",
        ),
    };
    hub.metrics().rejected(reason);
    tracing::debug!("refused a connection from {ip}: {reason}");
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

async fn websocket(State(hub): State<Arc<Hub>>, mut request: Request) -> Response {
    let ip = remote_ip(&request);
    // Whether the check below refused (and counted) it; any other refusal
    // is a request that is not a valid upgrade.
    let counted = std::cell::Cell::new(false);
    let check = |req: &volley::ServerRequest| -> Result<Accept, Rejection> {
        if !hub.origin_allowed(req.origin()) {
            hub.metrics().rejected("origin");
            counted.set(true);
            return Err(Rejection::new(StatusCode::FORBIDDEN).body("origin not allowed\n"));
        }
        if !req.protocols.iter().any(|p| p == SUBPROTOCOL) {
            hub.metrics().rejected("subprotocol");
            counted.set(true);
            return Err(Rejection::new(StatusCode::BAD_REQUEST).body(format!(
                "offer the WebSocket subprotocol {SUBPROTOCOL} (supported: {SUBPROTOCOL})\n"
            )));
        }
        Ok(Accept::new().protocol(SUBPROTOCOL))
    };
    let upgrade = volley::upgrade_with(
        &mut request,
        hub.ws_config().clone(),
        check,
        Io::from_upgraded,
    );
    let (response, upgrading) = match upgrade {
        Ok(pair) => pair,
        Err(rejection) => {
            if !counted.get() {
                hub.metrics().rejected("bad_request");
            }
            return rejection.map(Body::from);
        }
    };
    let (key, outbox) = match hub.admit(ip) {
        Ok(admitted) => admitted,
        Err(why) => return refuse(&hub, why, ip),
    };
    let transport = TransportLabels {
        transport: match request.version() {
            axum::http::Version::HTTP_2 => "websocket-h2",
            _ => "websocket-h1",
        },
    };
    tokio::spawn(connection(
        hub.clone(),
        upgrading,
        key,
        outbox,
        ip,
        transport,
    ));
    response.map(Body::new)
}

/// A WebSocket connection's task: waits for hyper's upgrade, then runs the
/// session. An idle connection is this future, so its size matters. It is
/// a chain of combinators, not an `async` block: an `async` block keeps
/// its captured values (the hub, key, outbox, address, labels: about 80
/// bytes) in slots of their own for its whole life, while `then` drops
/// the closure that holds them when the upgrade is done and reuses the
/// space for the session. Binding the upgrade's result first (not matching
/// on it in place) also keeps a second WebSocket-sized slot out.
fn connection(
    hub: Arc<Hub>,
    upgrading: volley::UpgradingWith<Io>,
    key: u64,
    outbox: Arc<crate::outbox::Outbox>,
    ip: IpAddr,
    transport: TransportLabels,
) -> impl Future<Output = ()> + Send {
    upgrading.then(move |upgraded| match upgraded {
        Ok(ws) => {
            let open = hub
                .metrics()
                .connections_by_transport
                .get_or_create(&transport)
                .clone();
            open.inc();
            Either::Left(session::run(hub, ws, key, outbox, ip).map(move |()| {
                open.dec();
            }))
        }
        Err(e) => {
            tracing::debug!("upgrade failed: {e}");
            hub.leave(key, ip, None);
            Either::Right(std::future::ready(()))
        }
    })
}

/// The `Retry-After` of a temporary API error, in seconds: about how long a
/// node takes to reopen its Redis connections after an outage
/// (docs/http-api.md).
const API_RETRY_AFTER_SECS: &str = "1";

/// An API error: an HTTP status and the protocol's error object. A
/// temporary error (the engine unreachable, code 100) is a 503 with
/// `Retry-After`: the call was refused and may be repeated unchanged. A
/// publish the engine did not answer is a 504 (code 100 too): it may or may
/// not have been published, and repeating it may publish it twice.
fn api_error(code: ErrorCode) -> Response {
    let status = match code {
        ErrorCode::BadRequest | ErrorCode::UnknownChannel | ErrorCode::UnrecoverablePosition => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::MethodNotFound => StatusCode::NOT_FOUND,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::NotAvailable => StatusCode::BAD_REQUEST,
        ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::OutcomeUnknown => StatusCode::GATEWAY_TIMEOUT,
        code if code.temporary() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = protocol::to_json(&json!({ "error": protocol::ReplyError::from(code) }));
    let mut response = json_response(status, body);
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(API_RETRY_AFTER_SECS),
        );
    }
    response
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body + "\n",
    )
        .into_response()
}

fn ok<T: serde::Serialize>(result: &T) -> Response {
    json_response(
        StatusCode::OK,
        protocol::to_json(&json!({ "result": result })),
    )
}

/// Constant-time comparison of a presented key with the configured one.
fn key_matches(presented: Option<&str>, configured: Option<&str>) -> bool {
    let (Some(p), Some(c)) = (presented, configured) else {
        return false;
    };
    p.len() == c.len()
        && p.bytes()
            .zip(c.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (s, key) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(key.trim())
}

/// An API call: the key is checked from the head, before any of the body is
/// read; the body must then arrive within `limits.api_body_timeout_ms` and
/// hold at most `limits.api_max_body_bytes`.
async fn api(
    State(hub): State<Arc<Hub>>,
    Path(method): Path<String>,
    request: Request,
) -> Response {
    if !key_matches(
        authorization(request.headers(), "apikey"),
        hub.config().api_key.as_deref(),
    ) {
        return closing(api_error(ErrorCode::Unauthorized));
    }
    let limits = &hub.config().limits;
    let timeout = Duration::from_millis(limits.api_body_timeout_ms);
    let body = match read_body(request, limits.api_max_body_bytes, timeout).await {
        Ok(body) => body,
        Err(response) => return closing(response),
    };
    let body = if body.is_empty() { &b"{}"[..] } else { &body };
    match call(&hub, &method, body).await {
        Ok(response) => response,
        Err(code) => api_error(code),
    }
}

/// The request's body if it holds at most `max` bytes and arrives within
/// `timeout`, or the response that refuses it (413, 408; 413 before any of
/// the body is read when its declared length is over).
pub(crate) async fn read_body(
    request: Request,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, Response> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("this endpoint takes bodies of at most {max} bytes\n"),
        )
            .into_response()
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let body = Limited::new(request.into_body(), max);
    match tokio::time::timeout(timeout, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => {
            tracing::debug!("request body: {e}");
            Err((StatusCode::BAD_REQUEST, "unreadable request body\n").into_response())
        }
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {timeout:?}\n"),
        )
            .into_response()),
    }
}

/// Marks a response that leaves a request body unread as the connection's
/// last.
pub(crate) fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ErrorCode> {
    serde_json::from_slice(body).map_err(|_| ErrorCode::BadRequest)
}

#[derive(Deserialize)]
struct ChannelParams {
    channel: String,
}

async fn call(hub: &Hub, method: &str, body: &[u8]) -> Result<Response, ErrorCode> {
    match method {
        "publish" => {
            #[derive(Deserialize)]
            struct P {
                channel: String,
                data: Box<RawValue>,
            }
            let p: P = parse(body)?;
            Ok(ok(&commands::publish(hub, &p.channel, p.data, None).await?))
        }
        "broadcast" => {
            #[derive(Deserialize)]
            struct P {
                channels: Vec<String>,
                data: Box<RawValue>,
            }
            let p: P = parse(body)?;
            async fn publish(hub: &Hub, channel: &str, data: &RawValue) -> serde_json::Value {
                match commands::publish(hub, channel, data.to_owned(), None).await {
                    Ok(r) => json!({ "result": r }),
                    Err(code) => json!({ "error": protocol::ReplyError::from(code) }),
                }
            }
            // Distinct channels are independent: publishing them at once
            // lets the Redis engine pipeline the scripts instead of waiting
            // a round trip per channel. A list naming a channel twice is
            // published in its order.
            let distinct = p.channels.iter().collect::<HashSet<_>>().len() == p.channels.len();
            let responses = if distinct {
                join_all(p.channels.iter().map(|c| publish(hub, c, &p.data))).await
            } else {
                let mut responses = Vec::with_capacity(p.channels.len());
                for channel in &p.channels {
                    responses.push(publish(hub, channel, &p.data).await);
                }
                responses
            };
            Ok(ok(&json!({ "responses": responses })))
        }
        "presence" | "presence_stats" => {
            let p: ChannelParams = parse(body)?;
            let stats = method == "presence_stats";
            Ok(ok(&commands::presence(hub, &p.channel, stats).await?))
        }
        "history" => {
            let p: commands::HistoryParams = parse(body)?;
            Ok(ok(&commands::history(hub, &p).await?))
        }
        "disconnect" => {
            #[derive(Deserialize)]
            struct P {
                #[serde(default)]
                user: Option<String>,
                #[serde(default)]
                client: Option<String>,
                #[serde(default = "yes")]
                reconnect: bool,
                #[serde(default)]
                reason: Option<String>,
            }
            let p: P = parse(body)?;
            if p.user.is_none() && p.client.is_none() {
                return Err(ErrorCode::BadRequest);
            }
            if p.reason.as_ref().is_some_and(|r| !valid_reason(r)) {
                return Err(ErrorCode::BadRequest);
            }
            let target = Target {
                user: p.user,
                client: p.client,
            };
            let n = hub
                .disconnect(&target, p.reconnect, p.reason.as_deref())
                .await
                .map_err(|e| {
                    tracing::warn!("disconnect: {e}");
                    ErrorCode::Internal
                })?;
            Ok(ok(&json!({ "disconnected": n })))
        }
        "unsubscribe" => {
            #[derive(Deserialize)]
            struct P {
                user: String,
                channel: String,
            }
            let p: P = parse(body)?;
            let n = hub
                .unsubscribe_user(&p.user, &p.channel, 2500, "unsubscribed by server")
                .await?;
            Ok(ok(&json!({ "unsubscribed": n })))
        }
        "send" => {
            #[derive(Deserialize)]
            struct P {
                user: String,
                data: Box<RawValue>,
            }
            let p: P = parse(body)?;
            let target = Target {
                user: Some(p.user),
                client: None,
            };
            let n = hub.send(&target, &p.data).await.map_err(|e| {
                tracing::warn!("send: {e}");
                ErrorCode::Internal
            })?;
            Ok(ok(&json!({ "delivered": n })))
        }
        "channels" => {
            let channels = commands::channels(hub).await?;
            Ok(ok(&json!({ "channels": channels })))
        }
        "info" => Ok(ok(&hub.info().await)),
        _ => Err(ErrorCode::MethodNotFound),
    }
}

fn yes() -> bool {
    true
}

/// A reason fits in a close frame: at most 123 bytes (docs/protocol.md §7.6).
fn valid_reason(reason: &str) -> bool {
    reason.len() <= 123
}

async fn metrics(State(hub): State<Arc<Hub>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        hub.metrics().encode(),
    )
        .into_response()
}

async fn ready(State(hub): State<Arc<Hub>>) -> Response {
    if hub.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else if !hub.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "engine unavailable\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "Volley hub {}. WebSocket endpoint: {PATH} (subprotocol {SUBPROTOCOL}). \
             `volley serve` runs the demo with `demo = true`.\n",
            crate::hub::VERSION
        ),
    )
        .into_response()
}

async fn asset(Path(name): Path<String>) -> Response {
    match assets::by_name(&name) {
        Some(response) => response,
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

async fn admin_stats(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    if !key_matches(
        authorization(&headers, "bearer"),
        hub.config().admin_key.as_deref(),
    ) {
        return (StatusCode::UNAUTHORIZED, "admin key required\n").into_response();
    }
    let info = hub.info().await;
    let rates = hub.metrics().rates();
    let channels = hub.channels().await.unwrap_or_default();
    let channels: Vec<_> = channels
        .into_iter()
        .map(|c| {
            let mut v = json!({ "channel": c.channel, "subscribers": c.num_clients });
            if let Some(offset) = c.offset {
                v["offset"] = offset.into();
            }
            v
        })
        .collect();
    ok_plain(&json!({
        "version": info.version,
        "uptime_ms": info.uptime_ms,
        "connections": info.num_connections,
        "subscriptions": info.num_subscriptions,
        "messages_in_per_s": rates.messages_in_per_s,
        "messages_out_per_s": rates.messages_out_per_s,
        "bytes_in_per_s": rates.bytes_in_per_s,
        "bytes_out_per_s": rates.bytes_out_per_s,
        "channels": channels,
        "node": info.node,
        "nodes": info.nodes,
    }))
}

pub(crate) fn ok_plain(value: &serde_json::Value) -> Response {
    json_response(StatusCode::OK, protocol::to_json(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle WebSocket connection is its task: it holds one WebSocket (in
    /// the session), not a second one from the upgrade's result (it held
    /// two before the result was bound by a `let`).
    #[tokio::test]
    async fn a_connection_task_holds_one_websocket() {
        let hub = Hub::new(crate::HubConfig::default()).unwrap();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let (key, outbox) = hub.admit(ip).unwrap();
        let upgrading: volley::UpgradingWith<Io> =
            Box::pin(async { Err(volley::Error::Io(std::io::Error::other("not upgraded"))) });
        let transport = TransportLabels {
            transport: "websocket-h1",
        };
        let task = connection(hub.clone(), upgrading, key, outbox, ip, transport);
        let size = std::mem::size_of_val(&task);
        let ws = std::mem::size_of::<volley::WebSocket<Io>>();
        assert!(size <= ws + 640, "{size} bytes for a {ws}-byte WebSocket");
        // tokio allocates a task as its future plus 104 bytes of header and
        // trailer, rounded up to 128 (x86-64 and aarch64): at most 664 bytes
        // is a 768-byte allocation, one more is 896 bytes per connection
        // (the future was 872 bytes, a 1,024-byte task, before it was a
        // chain of combinators and the session's loop was reshaped).
        assert!(size <= 664, "the connection task grew to {size} bytes");
        task.await;
        assert_eq!(hub.connection_count(), 0, "a failed upgrade leaves");
    }
}

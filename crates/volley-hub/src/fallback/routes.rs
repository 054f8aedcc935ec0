//! The HTTP endpoints of the fallback transports (docs/protocol.md,
//! "Transports").

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::StreamBody;
use serde::Deserialize;

use super::carrier::Carrier;
use super::link::{Intake, Kind, Link, PollRefusal};
use super::sse::EventStream;
use crate::http::{closing, read_body, refuse, remote_ip};
use crate::hub::Hub;
use crate::metrics::TransportLabels;
use crate::session;

/// Lets pages of allowed origins use the fallback endpoints from another
/// origin (CORS): a request with an allowed `Origin` gets it back in
/// `Access-Control-Allow-Origin`, and a preflight (`OPTIONS`, which a
/// browser sends before a `DELETE`) is answered here. No credentials are
/// involved: the session id in the URL is the capability.
pub(crate) async fn cors(State(hub): State<Arc<Hub>>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let preflight = request.method() == Method::OPTIONS;
    let mut response = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    if let Some(origin) = origin
        && hub.origin_allowed(origin.to_str().ok())
    {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.append(header::VARY, HeaderValue::from_static("origin"));
        if preflight {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, DELETE"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("content-type"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
    }
    response
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such session\n").into_response()
}

/// Opens a session as a WebSocket handshake would: the Origin allowlist,
/// then the connection limits and the drain. Starts its session task.
fn open(hub: &Arc<Hub>, request: &Request, kind: Kind) -> Result<(String, Arc<Link>), Response> {
    let ip = remote_ip(request);
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if !hub.origin_allowed(origin) {
        hub.metrics().rejected("origin");
        return Err((StatusCode::FORBIDDEN, "origin not allowed\n").into_response());
    }
    let (key, outbox) = hub.admit(ip).map_err(|why| refuse(hub, why, ip))?;
    let link = Arc::new(Link::new(kind));
    let id = hub.sessions().insert(link.clone());
    let session_timeout = Duration::from_millis(hub.config().limits.session_timeout_ms);
    let carrier = Carrier::new(link.clone(), session_timeout);
    let (task_hub, task_link, task_id) = (hub.clone(), link.clone(), id.clone());
    tokio::spawn(async move {
        let open = task_hub
            .metrics()
            .connections_by_transport
            .get_or_create(&TransportLabels {
                transport: kind.label(),
            })
            .clone();
        open.inc();
        session::run(task_hub.clone(), carrier, key, outbox, ip).await;
        open.dec();
        // A long-poll client gets the last messages (the `disconnect` push)
        // by its next poll; an SSE stream has them already.
        if kind == Kind::LongPoll {
            task_link.linger(session_timeout).await;
        }
        task_hub.sessions().remove(&task_id);
    });
    Ok((id, link))
}

/// `GET /connection/sse`: a new session, its messages as an event stream.
pub(crate) async fn sse(State(hub): State<Arc<Hub>>, request: Request) -> Response {
    let (id, link) = match open(&hub, &request, Kind::Sse) {
        Ok(opened) => opened,
        Err(refused) => return refused,
    };
    let ping = Duration::from_millis(hub.config().limits.ping_interval_ms);
    let body = Body::new(StreamBody::new(EventStream::new(link, &id, ping)));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

/// `POST /connection/poll`: a new long-poll session.
pub(crate) async fn poll_open(State(hub): State<Arc<Hub>>, request: Request) -> Response {
    match open(&hub, &request, Kind::LongPoll) {
        Ok((id, _)) => crate::http::ok_plain(&serde_json::json!({ "session": id })),
        Err(refused) => refused,
    }
}

#[derive(Deserialize)]
pub(crate) struct PollQuery {
    session: String,
    #[serde(default)]
    ack: u64,
}

/// `GET /connection/poll?session=&ack=`: the messages after `ack`, held
/// until there is one or `limits.poll_timeout_ms` passes.
pub(crate) async fn poll(State(hub): State<Arc<Hub>>, Query(q): Query<PollQuery>) -> Response {
    let Some(link) = hub.sessions().get(&q.session) else {
        return not_found();
    };
    if link.kind() != Kind::LongPoll {
        return not_found();
    }
    let guard = match link.begin_poll(q.ack) {
        Ok(guard) => guard,
        Err(PollRefusal::Busy) => {
            return (StatusCode::CONFLICT, "another poll is under way\n").into_response();
        }
        Err(PollRefusal::BadAck) => {
            return (
                StatusCode::BAD_REQUEST,
                "ack is past the last message sent, or behind an earlier ack\n",
            )
                .into_response();
        }
    };
    let timeout = Duration::from_millis(hub.config().limits.poll_timeout_ms);
    let Some((messages, last)) = link.wait_messages(&guard, q.ack, timeout).await else {
        drop(guard);
        hub.sessions().remove(&q.session);
        return not_found();
    };
    let mut body = Vec::with_capacity(messages.iter().map(|m| m.len() + 1).sum::<usize>() + 32);
    body.extend_from_slice(b"{\"messages\":[");
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(m);
    }
    body.extend_from_slice(format!("],\"last\":{last}}}\n").as_bytes());
    // Never from a cache: each poll's answer is new.
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
pub(crate) struct SendQuery {
    session: String,
    seq: u64,
}

/// `POST /connection/send?session=&seq=`: commands, one JSON object per
/// line, run in order as consecutive WebSocket messages would be.
pub(crate) async fn send(
    State(hub): State<Arc<Hub>>,
    Query(q): Query<SendQuery>,
    request: Request,
) -> Response {
    let Some(link) = hub.sessions().get(&q.session) else {
        return closing(not_found());
    };
    let limits = &hub.config().limits;
    let timeout = Duration::from_millis(limits.api_body_timeout_ms);
    let body = match read_body(request, limits.max_message_size, timeout).await {
        Ok(body) => body,
        Err(refused) => return closing(refused),
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "the body must be UTF-8 text\n").into_response();
    };
    let commands = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    match link.post(q.seq, commands).await {
        Intake::Accepted | Intake::Replayed => StatusCode::NO_CONTENT.into_response(),
        Intake::OutOfOrder => {
            (StatusCode::CONFLICT, "seq is not the next request\n").into_response()
        }
        Intake::Ended => not_found(),
    }
}

#[derive(Deserialize)]
pub(crate) struct SessionQuery {
    session: String,
}

/// `DELETE /connection/session?session=`: the client closes its session.
pub(crate) async fn close(State(hub): State<Arc<Hub>>, Query(q): Query<SessionQuery>) -> Response {
    let Some(link) = hub.sessions().get(&q.session) else {
        return not_found();
    };
    link.client_gone();
    hub.sessions().remove(&q.session);
    StatusCode::NO_CONTENT.into_response()
}

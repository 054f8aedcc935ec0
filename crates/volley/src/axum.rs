//! An axum extractor for WebSocket upgrades, shaped like axum's own
//! `WebSocketUpgrade`, with Volley's limits, permessage-deflate and
//! keepalive (one [`WebSocketConfig`]).
//!
//! ```no_run
//! use axum::{Router, response::Response, routing::get};
//! use volley::axum::WebSocketUpgrade;
//!
//! async fn handler(ws: WebSocketUpgrade) -> Response {
//!     ws.protocols(["chat.v1"]).on_upgrade(|mut socket| async move {
//!         while let Some(Ok(message)) = socket.recv().await {
//!             if socket.send(message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let app: Router = Router::new().route("/ws", get(handler));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! The handshake is decided by the core, as for [`accept_with`](crate::accept_with):
//! a request that is not a valid upgrade is answered 400 (426 for a wrong
//! version) before the handler runs.

use std::future::Future;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use volley_proto::handshake::{Accept, Rejection, ServerRequest};

use crate::config::WebSocketConfig;
use crate::server::negotiate;
use crate::upgrade::{rejection_response, upgrading, validate};

/// The WebSocket an [`on_upgrade`](WebSocketUpgrade::on_upgrade) callback gets.
pub type WebSocket = crate::WebSocket<TokioIo<hyper::upgrade::Upgraded>>;

/// Extracts a WebSocket upgrade request; answer it with
/// [`on_upgrade`](Self::on_upgrade).
#[derive(Debug)]
pub struct WebSocketUpgrade {
    request: ServerRequest,
    on_upgrade: OnUpgrade,
    config: WebSocketConfig,
    protocols: Vec<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request = validate(
            &parts.method,
            &parts.uri,
            parts.version,
            &parts.headers,
            &parts.extensions,
        )
        .map_err(IntoResponse::into_response)?;
        let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or_else(|| {
            // Served by something that cannot hand over the connection
            // (axum::serve can; a plain HTTP/2 stream cannot).
            rejection_response(
                &Rejection::new(StatusCode::UPGRADE_REQUIRED)
                    .body("this connection cannot be upgraded"),
            )
            .into_response()
        })?;
        Ok(Self {
            request,
            on_upgrade,
            config: WebSocketConfig::default(),
            protocols: Vec::new(),
        })
    }
}

impl WebSocketUpgrade {
    /// The subprotocols this endpoint speaks. The first one the client
    /// offered (in the client's order of preference) is accepted; when none
    /// matches, the upgrade goes ahead without a subprotocol (check
    /// [`selected_protocol`](Self::selected_protocol) first to refuse it).
    pub fn protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Volley's configuration for this connection: limits, permessage-deflate,
    /// keepalive, write high-water mark.
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.config = config;
        self
    }

    /// The validated upgrade request (path, Origin, cookies, offered
    /// subprotocols and extensions).
    pub fn request(&self) -> &ServerRequest {
        &self.request
    }

    /// The subprotocol that will be accepted, if any.
    pub fn selected_protocol(&self) -> Option<&str> {
        self.request
            .protocols
            .iter()
            .find(|offered| self.protocols.contains(offered))
            .map(String::as_str)
    }

    /// Answers the upgrade: returns the 101 response and, once hyper has
    /// switched protocols, runs `callback` with the WebSocket in a task of
    /// its own. A malformed permessage-deflate offer is answered with 400
    /// instead, and the callback does not run.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut accept = Accept::new();
        if let Some(p) = self.selected_protocol() {
            accept = accept.protocol(p);
        }
        let accepted = match negotiate(&self.request, &self.config, |_| Ok(accept)) {
            Ok(accepted) => accepted,
            Err(rejection) => return rejection_response(&rejection).into_response(),
        };
        let (response, conn) = accepted.into_parts();
        let socket = upgrading(self.on_upgrade, conn, self.config);
        tokio::spawn(async move {
            match socket.await {
                Ok(socket) => callback(socket).await,
                Err(e) => tracing::debug!(error = %e, "the WebSocket upgrade did not complete"),
            }
        });
        response.map(|()| Body::empty())
    }
}

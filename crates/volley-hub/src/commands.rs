//! The hub's operations, written once for both of its front doors: the
//! WebSocket session (docs/protocol.md §6) and the HTTP API
//! (docs/http-api.md). Each takes the hub and already-parsed parameters and
//! returns the result or the protocol's error code; the callers only add what
//! is theirs (a connection's subscription checks, the API's key and JSON
//! envelope).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::auth::TokenError;
use crate::engine::{
    EngineError, HistoryError, HistoryQuery, HistoryResult, NewPublication, PublishResult,
};
use crate::hub::Hub;
use crate::protocol::{ClientInfo, ErrorCode, StreamPosition};

/// The `ClientInfo` of a connection: presence entries, join/leave pushes and
/// the `info` of its publications.
pub(crate) fn client_info(
    client: &Arc<str>,
    user: &Arc<str>,
    conn_info: Option<&Arc<RawValue>>,
    chan_info: Option<&Arc<RawValue>>,
) -> ClientInfo {
    ClientInfo {
        client: client.clone(),
        user: user.clone(),
        conn_info: conn_info.cloned(),
        chan_info: chan_info.cloned(),
    }
}

/// The reply error of a refused token (`connect`, `refresh`, a private
/// channel's `subscribe`).
pub(crate) fn token_error(e: TokenError) -> ErrorCode {
    match e {
        TokenError::Expired => ErrorCode::TokenExpired,
        TokenError::Invalid => ErrorCode::Unauthorized,
    }
}

/// Publishes to a channel: from a client (`info` is the publisher), the HTTP
/// API or the demo ticker (`info` is `None`).
pub(crate) async fn publish(
    hub: &Hub,
    channel: &str,
    data: Box<RawValue>,
    info: Option<ClientInfo>,
) -> Result<PublishResult, ErrorCode> {
    let options = hub.namespace_of(channel)?;
    let publication = NewPublication {
        data,
        info,
        at: Instant::now(),
    };
    let result = hub
        .broker()
        .publish(channel, options, publication)
        .await
        .map_err(|e| {
            tracing::warn!("publish to {channel}: {e}");
            match e {
                EngineError::OutcomeUnknown(_) => ErrorCode::OutcomeUnknown,
                _ => ErrorCode::Internal,
            }
        })?;
    hub.metrics().publications.inc();
    Ok(result)
}

/// The channel's presence: `{clients}`, or `{num_clients, num_users}` with
/// `stats` (error 108 where the namespace has no presence).
pub(crate) async fn presence(
    hub: &Hub,
    channel: &str,
    stats: bool,
) -> Result<serde_json::Value, ErrorCode> {
    let options = hub.namespace_of(channel)?;
    if !options.presence {
        return Err(ErrorCode::NotAvailable);
    }
    let clients = hub.presence_store().presence(channel).await.map_err(|e| {
        tracing::warn!("presence of {channel}: {e}");
        ErrorCode::Internal
    })?;
    Ok(if stats {
        let users: HashSet<_> = clients.iter().map(|c| &c.user).collect();
        serde_json::json!({ "num_clients": clients.len(), "num_users": users.len() })
    } else {
        serde_json::json!({ "clients": clients })
    })
}

/// Params of `history` (the client command and the HTTP API method).
#[derive(Debug, Deserialize)]
pub(crate) struct HistoryParams {
    pub(crate) channel: String,
    #[serde(default)]
    pub(crate) limit: Option<u64>,
    #[serde(default)]
    pub(crate) since: Option<StreamPosition>,
    #[serde(default)]
    pub(crate) reverse: bool,
}

/// Reads a channel's history (error 108 where the namespace keeps none, 113
/// for a position outside the current stream).
pub(crate) async fn history(hub: &Hub, p: &HistoryParams) -> Result<HistoryResult, ErrorCode> {
    let options = hub.namespace_of(&p.channel)?;
    if !options.has_history() {
        return Err(ErrorCode::NotAvailable);
    }
    let query = HistoryQuery {
        limit: p.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
        since: p.since.clone(),
        reverse: p.reverse,
        create: false,
    };
    hub.broker()
        .history(&p.channel, options, query)
        .await
        .map_err(|e| match e {
            HistoryError::Unrecoverable => ErrorCode::UnrecoverablePosition,
            HistoryError::Engine(e) => {
                tracing::warn!("history of {}: {e}", p.channel);
                ErrorCode::Internal
            }
        })
}

/// The channels with subscribers or history.
pub(crate) async fn channels(hub: &Hub) -> Result<Vec<crate::hub::ChannelSummary>, ErrorCode> {
    hub.channels().await.map_err(|e| {
        tracing::warn!("channels: {e}");
        ErrorCode::Internal
    })
}

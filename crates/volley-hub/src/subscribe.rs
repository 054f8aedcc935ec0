//! Subscribing and unsubscribing on this node, on top of the engine: the
//! node-level broker subscription, recovery, presence, join/leave, and the
//! broker's events coming back to the hub.

use std::sync::Arc;

use serde::Serialize;
use volley::PreparedFrame;

use crate::config::NamespaceOptions;
use crate::engine::{EngineError, HistoryError, HistoryQuery, HistoryResult, JoinLeave};
use crate::fanout::Action;
use crate::hub::Hub;
use crate::outbox::Outbox;
use crate::protocol::{ClientInfo, Publication, StreamPosition};

/// One subscription of one connection.
#[derive(Clone, Debug)]
pub(crate) struct Subscriber {
    /// The connection's key on this node.
    pub key: u64,
    /// Where its frames go.
    pub outbox: Arc<Outbox>,
    /// Its presence entry, and the `info` of its publications.
    pub info: ClientInfo,
}

/// What a subscribe asks for.
#[derive(Clone, Debug, Default)]
pub(crate) struct SubscribeRequest {
    /// Recover from this position.
    pub recover: Option<StreamPosition>,
    /// Include a presence snapshot.
    pub presence: bool,
}

/// The outcome of a subscribe (the reply's fields, §6.3).
#[derive(Debug, Serialize)]
pub(crate) struct SubscribeOutcome {
    /// The channel keeps history.
    pub recoverable: bool,
    /// The current epoch, when recoverable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Arc<str>>,
    /// The top offset, when recoverable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Recovery was asked for and succeeded.
    pub recovered: bool,
    /// Exactly the missed publications, when recovered.
    pub publications: Vec<Arc<Publication>>,
    /// join/leave pushes are sent.
    pub join_leave: bool,
    /// The presence snapshot, when asked for and enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<Vec<ClientInfo>>,
}

/// Why a subscribe failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SubscribeError {
    /// The engine failed (reading history or presence, or subscribing the
    /// node).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The recovery's reply does not fit in the hub's outbound budget now
    /// (docs/limits.md): nothing was subscribed; the client tries again
    /// later.
    #[error("the outbound budget cannot take a recovery reply of {bytes} bytes now")]
    Budget {
        /// The reply's size.
        bytes: usize,
    },
}

/// Encodes the subscribe reply. It is queued before any publication of the
/// subscription, and no publication falls between them.
pub(crate) type ReplyEncoder = Box<dyn Fn(&SubscribeOutcome) -> PreparedFrame + Send>;

impl Hub {
    /// Subscribes a connection: starts the node's broker subscription when
    /// needed, reads the recovery, queues the reply made by `reply`, starts
    /// delivery, and sends `join` when enabled. A reply that carries
    /// recovered publications is charged to the hub's outbound budget first;
    /// when it cannot be, nothing is subscribed ([`SubscribeError::Budget`]).
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        channel: &str,
        options: &NamespaceOptions,
        subscriber: Subscriber,
        request: SubscribeRequest,
        reply: ReplyEncoder,
    ) -> Result<(), SubscribeError> {
        let key = subscriber.key;
        let info = subscriber.info.clone();
        let outbox = subscriber.outbox.clone();
        let mut ready =
            self.fanout()
                .add_pending(channel, key, subscriber.outbox, subscriber.info, || {
                    self.subscribe_node(channel)
                });
        let result = async {
            let subscribed = ready
                .wait_for(Option::is_some)
                .await
                .map(|v| *v == Some(true))
                .unwrap_or(false);
            if !subscribed {
                return Err(EngineError::Unavailable(format!(
                    "cannot subscribe this node to {channel}"
                )));
            }
            let mut outcome = SubscribeOutcome {
                recoverable: false,
                epoch: None,
                offset: None,
                recovered: false,
                publications: Vec::new(),
                join_leave: options.join_leave,
                presence: None,
            };
            if options.has_history() {
                let (read, recovered) = self.recovery_read(channel, options, &request).await?;
                outcome.recoverable = true;
                outcome.epoch = Some(read.epoch);
                outcome.offset = Some(read.offset);
                outcome.recovered = recovered;
                outcome.publications = read.publications;
            }
            if options.presence {
                self.presence_store().add(channel, &info).await?;
                if request.presence {
                    outcome.presence = Some(self.presence_store().presence(channel).await?);
                }
            }
            Ok(outcome)
        }
        .await;
        let mut outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                self.remove_local(channel, key);
                return Err(e.into());
            }
        };
        let mut frame = reply(&outcome);
        // Thousands of clients recovering at once would each hold up to a
        // history's worth of publications here: the budget bounds them.
        let mut charged = !outcome.publications.is_empty();
        if charged && !outbox.charge_reply(frame.len()) {
            if outbox.reply_fits_budget(frame.len()) {
                if self.remove_local(channel, key).is_some() && options.presence {
                    self.presence_store().remove(channel, &info.client).await?;
                }
                return Err(SubscribeError::Budget { bytes: frame.len() });
            }
            // Larger than the budget would ever admit: the recovery fails as
            // when the history no longer reaches back (docs/protocol.md §10.3).
            outcome.recovered = false;
            outcome.publications = Vec::new();
            frame = reply(&outcome);
            charged = false;
        }
        if !self.fanout().activate(
            channel,
            key,
            outcome.epoch.clone().zip(outcome.offset),
            frame,
        ) {
            if charged {
                outbox.uncharge_reply();
            }
            return Ok(());
        }
        if options.join_leave
            && let Err(e) = self
                .broker()
                .publish_join_leave(channel, JoinLeave::Join, &info)
                .await
        {
            tracing::warn!("join in {channel}: {e}");
        }
        Ok(())
    }

    /// The subscribe's history read: the recovery when asked for and
    /// possible, else the stream's position. A top below what this node
    /// delivered ends the stream and reads again (a new epoch).
    async fn recovery_read(
        &self,
        channel: &str,
        options: &NamespaceOptions,
        request: &SubscribeRequest,
    ) -> Result<(HistoryResult, bool), EngineError> {
        // A read below what this node delivered can be a read overtaken by
        // the live delivery of later publications (they come on another
        // connection): it is read again, and only a second read still below
        // what had been delivered before it was sent means the stream went
        // back.
        let mut floor: Option<u64> = None;
        for _ in 0..3 {
            let (read, recovered) = match &request.recover {
                Some(pos) => {
                    let query = HistoryQuery {
                        since: Some(pos.clone()),
                        create: true,
                        ..HistoryQuery::default()
                    };
                    match self.broker().history(channel, options, query).await {
                        Ok(read) => (read, true),
                        Err(HistoryError::Unrecoverable) => {
                            (self.top(channel, options).await?, false)
                        }
                        Err(HistoryError::Engine(e)) => return Err(e),
                    }
                }
                None => (self.top(channel, options).await?, false),
            };
            let action =
                self.fanout()
                    .with(channel, |state| match state.delivered_in(&read.epoch) {
                        Some(delivered) if read.offset < delivered && floor.is_none() => {
                            Err(delivered)
                        }
                        Some(_) if floor.is_some_and(|f| read.offset >= f) => Ok(Action::None),
                        _ => Ok(state.check_top(&read.epoch, read.offset)),
                    });
            match action {
                Some(Err(delivered)) => floor = Some(delivered),
                Some(Ok(Action::Reset(epoch))) => {
                    floor = None;
                    self.broker().reset_stream(channel, &epoch).await?;
                }
                _ => return Ok((read, recovered)),
            }
        }
        Ok((self.top(channel, options).await?, false))
    }

    async fn top(
        &self,
        channel: &str,
        options: &NamespaceOptions,
    ) -> Result<HistoryResult, EngineError> {
        let query = HistoryQuery {
            limit: Some(0),
            create: true,
            ..HistoryQuery::default()
        };
        match self.broker().history(channel, options, query).await {
            Ok(read) => Ok(read),
            Err(HistoryError::Engine(e)) => Err(e),
            Err(HistoryError::Unrecoverable) => Err(EngineError::Protocol(format!(
                "{channel}: a read without a position was refused"
            ))),
        }
    }

    /// Starts the node's broker subscription to `channel`; the receiver says
    /// when it is done.
    fn subscribe_node(self: &Arc<Self>, channel: &str) -> crate::fanout::Ready {
        let (tx, rx) = tokio::sync::watch::channel(None);
        // The call fixes the order with unsubscribes; the await only waits.
        let fut = self.broker().subscribe(channel);
        let channel = channel.to_owned();
        tokio::spawn(async move {
            let ok = match fut.await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!("node subscribe to {channel}: {e}");
                    false
                }
            };
            let _ = tx.send(Some(ok));
        });
        rx
    }

    fn remove_local(&self, channel: &str, key: u64) -> Option<crate::fanout::Local> {
        self.fanout().remove(channel, key, || {
            let owned = channel.to_owned();
            let fut = self.broker().unsubscribe(channel);
            tokio::spawn(async move {
                if let Err(e) = fut.await {
                    tracing::debug!("node unsubscribe from {owned}: {e}");
                }
            });
        })
    }

    /// Ends a connection's subscription (and sends `leave` when enabled).
    /// Returns whether it existed.
    pub(crate) async fn unsubscribe(
        &self,
        channel: &str,
        options: &NamespaceOptions,
        key: u64,
    ) -> Result<bool, EngineError> {
        let Some(local) = self.remove_local(channel, key) else {
            return Ok(false);
        };
        if options.presence {
            self.presence_store()
                .remove(channel, &local.info.client)
                .await?;
        }
        if options.join_leave {
            self.broker()
                .publish_join_leave(channel, JoinLeave::Leave, &local.info)
                .await?;
        }
        Ok(true)
    }

    /// Carries out what the fan-out asked for.
    pub(crate) fn act(self: &Arc<Self>, channel: &str, action: Action) {
        match action {
            Action::None => {}
            Action::Fill(epoch, top) => {
                self.metrics().stream_holes.inc();
                let hub = self.clone();
                let channel = channel.to_owned();
                tokio::spawn(async move { hub.fill(channel, epoch, top).await });
            }
            Action::Reset(epoch) => {
                let hub = self.clone();
                let channel = channel.to_owned();
                tokio::spawn(async move {
                    if let Err(e) = hub.broker().reset_stream(&channel, &epoch).await {
                        tracing::warn!("ending the stream of {channel}: {e}");
                    }
                });
            }
        }
    }

    async fn fill(self: Arc<Self>, channel: String, epoch: Arc<str>, top: u64) {
        /// Reads that fail (Redis coming back) are tried this many times,
        /// 200 ms apart, before the subscribers are told to recover.
        const ATTEMPTS: u32 = 5;
        let mut from = (epoch, top);
        let mut failures = 0;
        loop {
            let Ok(options) = self.namespace_of(&channel) else {
                return;
            };
            let query = HistoryQuery {
                since: Some(StreamPosition {
                    epoch: from.0.to_string(),
                    offset: from.1,
                }),
                ..HistoryQuery::default()
            };
            let read = match self.broker().history(&channel, options, query).await {
                Ok(r) => Some((r.epoch, r.offset, r.publications)),
                Err(HistoryError::Engine(e)) if failures + 1 < ATTEMPTS => {
                    failures += 1;
                    tracing::debug!("filling a hole in {channel} after {}: {e}", from.1);
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => {
                    tracing::info!("cannot fill a hole in {channel} after {}: {e}", from.1);
                    None
                }
            };
            failures = 0;
            match self.fanout().filled(&channel, from.clone(), read) {
                Action::Fill(e, t) => from = (e, t),
                other => {
                    self.act(&channel, other);
                    return;
                }
            }
        }
    }
}

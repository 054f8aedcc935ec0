//! One Redis shard: where it is (a URL, or a master behind Sentinels), a
//! multiplexed command connection that reopens after a failure, the task
//! that batches this node's publishes into calls of the publish script, and
//! this node's pub/sub connection with the task that reads it.
//!
//! Nothing here blocks: commands wait at most the configured timeouts, and
//! reconnecting happens in the background with a bounded backoff.

use std::collections::HashSet;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_core::Stream;
use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{Client, RedisError, RedisResult, Script};
use tokio::sync::{mpsc, oneshot};

use super::{RedisConfigError, connection_config, unavailable};
use crate::config::RedisOptions;
use crate::engine::EngineError;
use crate::sync::lock;

/// Where a shard's master is.
enum Source {
    /// A fixed address.
    Fixed(Client),
    /// The master of this name, as the Sentinels say now.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// What the reader tells the engine.
pub(super) enum ReaderEvent<'a> {
    /// A message on a pub/sub channel.
    Message(&'a str, &'a str),
    /// The pub/sub connection was reopened; these channels may have missed
    /// messages.
    Reconnected(&'a [String]),
}

/// The engine's handling of reader events.
pub(super) type Handler = Arc<dyn Fn(ReaderEvent<'_>) + Send + Sync>;

/// A change of this node's pub/sub subscriptions.
pub(super) enum SubCommand {
    /// Subscribe; the sender learns when Redis confirmed it.
    Subscribe(String, oneshot::Sender<Result<(), EngineError>>),
    /// Unsubscribe.
    Unsubscribe(String),
}

/// One publication with history, as the publish script takes it.
pub(super) struct Publish {
    /// The stream's key (epoch and top offset).
    pub(super) stream: String,
    /// The history list's key.
    pub(super) list: String,
    /// The epoch to start when the stream is new.
    pub(super) new_epoch: String,
    /// The keys' TTL, seconds.
    pub(super) ttl: u64,
    /// History entries kept.
    pub(super) size: usize,
    /// The time of the publication, ms since the Unix epoch.
    pub(super) ts: u64,
    /// The publication's JSON.
    pub(super) json: String,
    /// The channel's pub/sub name.
    pub(super) pubsub: String,
}

/// A publication waiting for the batcher, and where its result goes.
struct Queued {
    publish: Publish,
    reply: oneshot::Sender<Result<(String, u64), EngineError>>,
}

/// One shard.
pub(super) struct Shard {
    name: String,
    source: Source,
    options: RedisOptions,
    conn: Mutex<Option<MultiplexedConnection>>,
    connecting: tokio::sync::Mutex<()>,
    /// The pub/sub connection is up.
    subscribed: Arc<AtomicBool>,
    commands: Mutex<Option<mpsc::UnboundedSender<SubCommand>>>,
    /// The batcher's queue, once started.
    publishes: Mutex<Option<mpsc::UnboundedSender<Queued>>>,
}

impl Shard {
    pub(super) fn new(url: &str, options: &RedisOptions) -> Result<Self, RedisConfigError> {
        let err = |reason: String| RedisConfigError::Url {
            url: url.to_owned(),
            reason,
        };
        let source = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            // redis+sentinel://host:port[,host:port...]/master_name[/db]
            let (hosts, path) = rest
                .split_once('/')
                .ok_or_else(|| err("no master name after the Sentinel addresses".into()))?;
            let mut parts = path.split('/');
            let master = parts
                .next()
                .filter(|m| !m.is_empty())
                .ok_or_else(|| err("no master name".into()))?;
            let sentinels: Vec<String> = hosts.split(',').map(|h| format!("redis://{h}")).collect();
            let client = SentinelClient::build(
                sentinels,
                master.to_owned(),
                None,
                SentinelServerType::Master,
            )
            .map_err(|e| err(e.to_string()))?;
            Source::Sentinel(tokio::sync::Mutex::new(client))
        } else {
            Source::Fixed(Client::open(url).map_err(|e| err(e.to_string()))?)
        };
        Ok(Self {
            name: url.to_owned(),
            source,
            options: options.clone(),
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            subscribed: Arc::new(AtomicBool::new(false)),
            commands: Mutex::new(None),
            publishes: Mutex::new(None),
        })
    }

    /// A client for the current master.
    async fn client(&self) -> Result<Client, EngineError> {
        match &self.source {
            Source::Fixed(client) => Ok(client.clone()),
            Source::Sentinel(sentinel) => {
                let timeout = Duration::from_millis(self.options.connect_timeout_ms);
                let mut sentinel = sentinel.lock().await;
                tokio::time::timeout(timeout, sentinel.async_get_client())
                    .await
                    .map_err(|_| unavailable(format!("{}: Sentinels did not answer", self.name)))?
                    .map_err(|e| unavailable(format!("{}: {e}", self.name)))
            }
        }
    }

    /// The command connection, opened when there is none.
    pub(super) async fn connection(&self) -> Result<MultiplexedConnection, EngineError> {
        if let Some(conn) = lock(&self.conn).clone() {
            return Ok(conn);
        }
        let _one = self.connecting.lock().await;
        if let Some(conn) = lock(&self.conn).clone() {
            return Ok(conn);
        }
        let client = self.client().await?;
        let timeout = Duration::from_millis(self.options.connect_timeout_ms);
        let conn = tokio::time::timeout(
            timeout,
            client.get_multiplexed_async_connection_with_config(&connection_config(&self.options)),
        )
        .await
        .map_err(|_| unavailable(format!("{}: connect timed out", self.name)))?
        .map_err(|e| unavailable(format!("{}: {e}", self.name)))?;
        *lock(&self.conn) = Some(conn.clone());
        Ok(conn)
    }

    /// Passes a command's result on; a failure of the connection (not of
    /// the command) drops it, so that the next command reconnects (to the
    /// new master, behind Sentinels). A command whose answer was lost may
    /// have run: [`EngineError::OutcomeUnknown`]; one Redis refused, or
    /// that never reached it, did not: [`EngineError::Unavailable`].
    pub(super) fn check<T>(&self, result: RedisResult<T>) -> Result<T, EngineError> {
        result.map_err(|e| {
            if connection_lost(&e) {
                *lock(&self.conn) = None;
            }
            let what = format!("{}: {e}", self.name);
            if outcome_unknown(&e) {
                EngineError::OutcomeUnknown(what)
            } else {
                unavailable(what)
            }
        })
    }

    /// Whether the node's pub/sub connection to this shard is up.
    pub(super) fn is_healthy(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// Queues a change of the node's subscriptions (in call order).
    pub(super) fn command(&self, command: SubCommand) -> Result<(), EngineError> {
        let sender = lock(&self.commands).clone();
        match sender {
            Some(tx) => tx
                .send(command)
                .map_err(|_| unavailable("the pub/sub reader stopped")),
            None => Err(unavailable("the engine is not running")),
        }
    }

    /// Starts the pub/sub reader (`control` is the control channel when this
    /// shard carries it) and the publish batcher.
    pub(super) fn start(
        self: &Arc<Self>,
        control: Option<String>,
        handler: Handler,
        script: Script,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.commands) = Some(tx);
        let shard = Arc::downgrade(self);
        tokio::spawn(reader(shard.clone(), rx, control, handler));
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.publishes) = Some(tx);
        let max = (self.options.publish_batch as usize).max(1);
        tokio::spawn(batcher(shard, rx, script, max));
    }

    /// Publishes with history: `(epoch, offset)`. Through the batcher once
    /// the engine runs.
    pub(super) async fn publish(
        &self,
        publish: Publish,
        script: &Script,
    ) -> Result<(String, u64), EngineError> {
        let queue = lock(&self.publishes).clone();
        let Some(queue) = queue else {
            let mut results = self.publish_batch(script, &[publish]).await?;
            return results
                .pop()
                .ok_or_else(|| unavailable("no result from the publish script"));
        };
        let (reply, result) = oneshot::channel();
        queue
            .send(Queued { publish, reply })
            .map_err(|_| unavailable("the publish batcher stopped"))?;
        result
            .await
            .map_err(|_| unavailable("the publish batcher stopped"))?
    }

    /// One call of the publish script for a batch: a result per publication,
    /// in order.
    async fn publish_batch(
        &self,
        script: &Script,
        batch: &[Publish],
    ) -> Result<Vec<(String, u64)>, EngineError> {
        let mut conn = self.connection().await?;
        let mut invocation = script.prepare_invoke();
        for p in batch {
            invocation.key(&p.stream).key(&p.list);
            invocation
                .arg(&p.new_epoch)
                .arg(p.ttl)
                .arg(p.size)
                .arg(p.ts)
                .arg(&p.json)
                .arg(&p.pubsub);
        }
        let r: RedisResult<Vec<(String, u64)>> = invocation.invoke_async(&mut conn).await;
        let results = self.check(r)?;
        if results.len() != batch.len() {
            return Err(EngineError::Protocol(format!(
                "{} results from the publish script for {} publications",
                results.len(),
                batch.len()
            )));
        }
        Ok(results)
    }
}

/// Whether a command that failed so may still have run: the connection
/// broke or the answer timed out after it was sent. A refused connection,
/// or an error reply (`READONLY`, `LOADING`...), means it did not.
fn outcome_unknown(e: &RedisError) -> bool {
    !e.is_connection_refusal() && (e.is_io_error() || e.is_connection_dropped() || e.is_timeout())
}

fn connection_lost(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        )
}

/// The publish batcher: takes every publication waiting (up to `max`) and
/// makes one script call of them, without waiting for the previous call's
/// answer (the calls pipeline on the multiplexed connection). A publication
/// alone goes at once; under load the queue fills while a call is being
/// made, and the next call takes it all. Ends when the shard is dropped.
async fn batcher(
    shard: std::sync::Weak<Shard>,
    mut queue: mpsc::UnboundedReceiver<Queued>,
    script: Script,
    max: usize,
) {
    loop {
        let mut batch = Vec::new();
        if queue.recv_many(&mut batch, max).await == 0 {
            return;
        }
        let Some(this) = shard.upgrade() else {
            return;
        };
        let script = script.clone();
        tokio::spawn(async move {
            let (publishes, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|q| (q.publish, q.reply)).unzip();
            match this.publish_batch(&script, &publishes).await {
                Ok(results) => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(Ok(result));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

/// The pub/sub reader: (re)connects, (re)subscribes, and hands messages to
/// the engine in the order Redis sent them. Ends when the shard is dropped.
async fn reader(
    shard: std::sync::Weak<Shard>,
    mut commands: mpsc::UnboundedReceiver<SubCommand>,
    control: Option<String>,
    handler: Handler,
) {
    let mut wanted: HashSet<String> = HashSet::new();
    let mut backoff = Duration::from_millis(50);
    let mut first = true;
    loop {
        let Some(this) = shard.upgrade() else {
            return;
        };
        let connected = async {
            let client = this.client().await?;
            let timeout = Duration::from_millis(this.options.connect_timeout_ms);
            let pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
                .await
                .map_err(|_| unavailable("pub/sub connect timed out"))?
                .map_err(unavailable)?;
            let (mut sink, stream) = pubsub.split();
            let mut names: Vec<String> = wanted.iter().cloned().collect();
            names.extend(control.iter().cloned());
            if !names.is_empty() {
                tokio::time::timeout(timeout, sink.subscribe(&names))
                    .await
                    .map_err(|_| unavailable("pub/sub subscribe timed out"))?
                    .map_err(unavailable)?;
            }
            Ok::<_, EngineError>((sink, stream))
        }
        .await;
        let (mut sink, mut stream) = match connected {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("redis {}: {e}; retrying in {backoff:?}", this.name);
                drop(this);
                // While down, subscribes fail at once (error 100) and are
                // remembered for the reconnect.
                let deadline = tokio::time::sleep(backoff);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        () = &mut deadline => break,
                        command = commands.recv() => match command {
                            Some(SubCommand::Subscribe(name, ack)) => {
                                wanted.insert(name);
                                let _ = ack.send(Err(unavailable("redis is unreachable")));
                            }
                            Some(SubCommand::Unsubscribe(name)) => {
                                wanted.remove(&name);
                            }
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        this.subscribed.store(true, Ordering::Relaxed);
        if !first {
            tracing::info!("redis {}: pub/sub reconnected", this.name);
            // The command connection went through the same outage: open a
            // fresh one rather than fail the resync's reads on a dead one.
            *lock(&this.conn) = None;
            let list: Vec<String> = wanted.iter().cloned().collect();
            handler(ReaderEvent::Reconnected(&list));
        }
        first = false;
        let subscribed = this.subscribed.clone();
        let name = this.name.clone();
        drop(this);
        loop {
            let next = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx));
            tokio::select! {
                biased;
                message = next => match message {
                    Some(msg) => {
                        let payload = String::from_utf8_lossy(msg.get_payload_bytes());
                        handler(ReaderEvent::Message(msg.get_channel_name(), &payload));
                    }
                    None => break,
                },
                command = commands.recv() => match command {
                    Some(SubCommand::Subscribe(channel, ack)) => {
                        wanted.insert(channel.clone());
                        let r = sink.subscribe(&channel).await.map_err(unavailable);
                        let failed = r.is_err();
                        let _ = ack.send(r);
                        if failed {
                            break;
                        }
                    }
                    Some(SubCommand::Unsubscribe(channel)) => {
                        wanted.remove(&channel);
                        if sink.unsubscribe(&channel).await.is_err() {
                            break;
                        }
                    }
                    None => return,
                },
            }
        }
        subscribed.store(false, Ordering::Relaxed);
        tracing::warn!("redis {name}: pub/sub connection lost");
    }
}

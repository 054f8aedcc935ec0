//! One client connection: the command loop of docs/protocol.md §5-§6.
//!
//! A single task owns the connection's carrier (a WebSocket, or a fallback
//! session: `crate::transport`). It reads commands, runs them one at a time
//! in arrival order, and moves frames from the connection's outbox to the
//! carrier. Reads are handled first, and the outbox is written out once
//! nothing more is readable, so a burst of commands gets one write.

use std::future::{Future, poll_fn};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::value::RawValue;
use volley::Message;

use crate::auth::ConnectClaims;
use crate::channel;
use crate::commands::{self, HistoryParams};
use crate::hub::{Hub, VERSION, new_client_id, text_frame};
use crate::outbox::{Directive, OutFrame, Outbox, Queued};
use crate::protocol::{
    self, ClientInfo, Command, DisconnectCode, ErrorCode, Parsed, StreamPosition,
};
use crate::subscribe::{SubscribeError, SubscribeRequest, Subscriber};
use crate::transport::Transport;

/// Bytes moved from the outbox to the socket per write, at most (by the
/// connection's task, and by the fan-out's direct writes).
pub(crate) const WRITE_BUDGET: usize = 64 * 1024;
/// Commands handled before the outbox is written out even if more are
/// readable.
const MAX_READS_BEFORE_WRITE: u32 = 64;

/// The user id of anonymous connections, shared: `Arc::from("")` allocates
/// (16 bytes per idle connection).
static ANONYMOUS: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));

/// The authenticated side of a connection.
struct Session {
    client: Arc<str>,
    user: Arc<str>,
    conn_info: Option<Arc<RawValue>>,
    /// Boxed slice, not `Vec`: 8 bytes less in every connection's task.
    channels_claim: Option<Box<[String]>>,
    expires: Option<Instant>,
}

impl Session {
    /// This connection as others see it in `channel` (with its `chan_info`).
    fn info(&self, chan_info: Option<&Arc<RawValue>>) -> ClientInfo {
        commands::client_info(&self.client, &self.user, self.conn_info.as_ref(), chan_info)
    }
}

/// The subscriptions of this connection (channel and `chan_info`): a short
/// list (128 at most by default), kept as a boxed slice sized to its
/// contents, so that a connection with one subscription holds one entry
/// (and the connection's task a pointer and a length, not a `Vec`'s three
/// words). Subscribing and unsubscribing are rare next to deliveries.
#[derive(Default)]
struct Subscriptions(Box<[Subscription]>);

/// One subscription: its channel and `chan_info`.
type Subscription = (Box<str>, Option<Arc<RawValue>>);

impl Subscriptions {
    fn get(&self, channel: &str) -> Option<&Option<Arc<RawValue>>> {
        self.0.iter().find(|(c, _)| &**c == channel).map(|(_, i)| i)
    }

    fn contains_key(&self, channel: &str) -> bool {
        self.get(channel).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn insert(&mut self, channel: Box<str>, chan_info: Option<Arc<RawValue>>) {
        let mut list = std::mem::take(&mut self.0).into_vec();
        list.reserve_exact(1);
        list.push((channel, chan_info));
        self.0 = list.into_boxed_slice();
    }

    fn remove(&mut self, channel: &str) -> Option<Option<Arc<RawValue>>> {
        let i = self.0.iter().position(|(c, _)| &**c == channel)?;
        let mut list = std::mem::take(&mut self.0).into_vec();
        let (_, info) = list.swap_remove(i);
        self.0 = list.into_boxed_slice();
        Some(info)
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(c, _)| &**c)
    }
}

/// How the connection ends.
#[derive(Clone, Debug)]
enum Ending {
    /// Send a `disconnect` push, then close with the code (and the reason,
    /// or the code's name).
    Disconnect(DisconnectCode, Option<u64>, Option<Arc<str>>),
    /// Close with the code after the queued reply (failed connect).
    AfterReply(DisconnectCode),
    /// Close with 1001.
    GoingAway,
}

/// The loop's next step after an event.
enum Next {
    /// Handle this command.
    Text(volley::Utf8Bytes),
    /// End the connection (`None`: it is gone).
    End(Option<Ending>),
    /// Wait for the next event.
    Continue,
}

enum Event {
    Message(Message),
    Directive(Directive),
    Deadline,
    Gone,
}

struct Connection {
    hub: Arc<Hub>,
    key: u64,
    outbox: Arc<Outbox>,
    session: Option<Session>,
    subscriptions: Subscriptions,
    tokens: f64,
    refilled: Instant,
    /// Refusals (110) since `rejected_since`, a window of one second.
    rejected: u32,
    /// Commands read since the outbox was last written out (here, in
    /// this struct's padding, rather than in the loop's future).
    reads: u32,
    rejected_since: Instant,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The read side was last left pending with writes buffered: it may be
    /// waiting for them (a Pong), so it is polled again once they are out.
    read_waits_for_write: bool,
}

/// Runs one client connection to its end.
///
/// Not an `async fn`: its arguments would be stored twice in the future
/// (once as arguments, once as locals); the async block below uses the
/// captured values in place, which keeps an idle connection's task small.
pub(crate) fn run<T: Transport>(
    hub: Arc<Hub>,
    ws: T,
    key: u64,
    outbox: Arc<Outbox>,
    ip: IpAddr,
) -> impl Future<Output = ()> {
    let connect_timeout = Duration::from_millis(hub.config().limits.connect_timeout_ms);
    let mut conn = Connection {
        tokens: f64::from(hub.config().limits.commands_per_second),
        hub,
        key,
        outbox,
        session: None,
        subscriptions: Subscriptions::default(),
        refilled: Instant::now(),
        rejected: 0,
        reads: 0,
        rejected_since: Instant::now(),
        deadline: Some(Box::pin(tokio::time::sleep(connect_timeout))),
        read_waits_for_write: false,
    };
    let mut ws = ws;
    if let Some(socket) = ws.socket() {
        conn.outbox.attach(socket);
    }
    async move {
        // The ending goes straight into the boxed finish: as a local it
        // would keep a slot of its own in this future.
        if let Some(finish) = conn
            .drive(&mut ws)
            .await
            .map(|ending| Box::pin(conn.finish(&mut ws, ending)))
        {
            finish.await;
        }
        Box::pin(conn.cleanup(ip)).await;
    }
}

impl Connection {
    /// The connection's loop. An idle connection's task is mostly this
    /// future's state, so nothing but the loop's own state is held across
    /// its waits: the event is taken apart before any await (a `match`
    /// scrutinee would live across the arms' awaits), and a command is
    /// handled in a boxed future that owns its message. Not an `async fn`,
    /// which would store its two references twice.
    #[allow(clippy::manual_async_fn)]
    fn drive<'a, T: Transport>(
        &'a mut self,
        ws: &'a mut T,
    ) -> impl Future<Output = Option<Ending>> + 'a {
        async move {
            loop {
                let next = poll_fn(|cx| self.poll_event(cx, ws).map(|event| self.on_event(event)));
                let text = match next.await {
                    Next::Text(text) => text,
                    Next::End(ending) => return ending,
                    Next::Continue => continue,
                };
                let metrics = self.hub.metrics();
                metrics.messages_in.inc();
                metrics.bytes_in.inc_by(text.len() as u64);
                if let Some(ending) = Box::pin(self.handle_text(text)).await {
                    return Some(ending);
                }
            }
        }
    }

    /// What the loop does with an event: handle a command, end, or wait
    /// for the next.
    fn on_event(&mut self, event: Event) -> Next {
        match event {
            Event::Message(Message::Text(text)) => Next::Text(text),
            Event::Message(Message::Binary(_)) => Next::End(Some(Ending::Disconnect(
                DisconnectCode::BadRequest,
                None,
                None,
            ))),
            Event::Directive(Directive::Disconnect(code, after, reason)) => {
                Next::End(Some(Ending::Disconnect(code, after, reason)))
            }
            Event::Directive(Directive::GoingAway) => Next::End(Some(Ending::GoingAway)),
            Event::Directive(Directive::None) => Next::Continue,
            Event::Deadline => {
                self.deadline = None;
                match &self.session {
                    None => Next::End(Some(Ending::Disconnect(
                        DisconnectCode::ConnectTimeout,
                        None,
                        None,
                    ))),
                    Some(s) if s.expires.is_some_and(|e| e <= Instant::now()) => Next::End(Some(
                        Ending::Disconnect(DisconnectCode::TokenExpired, None, None),
                    )),
                    Some(s) => {
                        self.arm_expiry(s.expires);
                        Next::Continue
                    }
                }
            }
            Event::Gone => Next::End(None),
        }
    }

    /// Handles one command; boxed by the caller with the message it owns.
    async fn handle_text(&mut self, text: volley::Utf8Bytes) -> Option<Ending> {
        self.handle(&text).await
    }

    /// Reads first; when nothing more is readable (or after a run of reads),
    /// writes the outbox out.
    fn poll_event<T: Transport>(&mut self, cx: &mut Context<'_>, ws: &mut T) -> Poll<Event> {
        // From here on only this task writes to the socket, until it parks
        // again below (when it waits with everything written).
        self.outbox.unpark();
        if let Some(d) = &mut self.deadline
            && d.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Event::Deadline);
        }
        // While more replies wait than the queue limit, read no more
        // commands: a client that asks without reading is held back by TCP.
        let backlog = self.outbox.reply_backlog();
        // The read side is polled with the outbox as its waker, which marks
        // it before waking the task: a wake-up by a push alone (a delivery)
        // does not poll it, which was 4 % of a 10,000-subscriber fan-out.
        let read_waker = Waker::from(self.outbox.clone());
        if self.reads < MAX_READS_BEFORE_WRITE && !backlog && self.outbox.take_read_ready() {
            match ws.poll_receive(&mut Context::from_waker(&read_waker)) {
                Poll::Ready(Some(Ok(message))) => {
                    // More may be buffered, with no wake-up to come.
                    self.outbox.set_read_ready();
                    self.reads += 1;
                    return Poll::Ready(Event::Message(message));
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!("connection {}: {e}", self.key);
                    return Poll::Ready(Event::Gone);
                }
                Poll::Ready(None) => return Poll::Ready(Event::Gone),
                Poll::Pending => self.read_waits_for_write = ws.buffered_amount() > 0,
            }
        }
        // After a run of reads, messages may still wait in the connection's
        // buffer with no new readiness to wake us: come back for them.
        let more_to_read = self.reads >= MAX_READS_BEFORE_WRITE;
        self.reads = 0;
        if more_to_read {
            cx.waker().wake_by_ref();
        }
        loop {
            let hwm = self.hub.ws_config().write_high_water_mark();
            let buffered = ws.buffered_amount();
            // Parked (the fan-out may write for us) only while nothing of
            // ours waits and the WebSocket may still send: never behind a
            // Close, which a failed keepalive or the peer may have begun.
            let park = buffered == 0 && !backlog && ws.open();
            if buffered < hwm {
                // A fresh batch each time: an idle connection keeps no buffer.
                let mut batch = Vec::new();
                match self
                    .outbox
                    .poll_take(cx, &mut batch, WRITE_BUDGET, buffered, park)
                {
                    Poll::Ready(Directive::None) => self.queue_batch(ws, &mut batch),
                    Poll::Ready(directive) => return Poll::Ready(Event::Directive(directive)),
                    Poll::Pending => {}
                }
            }
            if ws.buffered_amount() == 0 {
                if backlog {
                    // The backlog is written: read commands again.
                    cx.waker().wake_by_ref();
                }
                return self.pending(cx, backlog);
            }
            // With the read side's waker: the carrier may wake reads and
            // writes through one slot (a fallback link does).
            match ws.poll_flush(&mut Context::from_waker(&read_waker)) {
                Poll::Ready(Ok(())) => {
                    if std::mem::take(&mut self.read_waits_for_write) {
                        self.outbox.set_read_ready();
                        cx.waker().wake_by_ref();
                    }
                    continue;
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!("connection {}: {e}", self.key);
                    return Poll::Ready(Event::Gone);
                }
                Poll::Pending => {
                    // Writing backs up; pushes accumulate in the outbox and
                    // are bounded there. Still watch for a directive.
                    if let Poll::Ready(d) = self.outbox.poll_directive(cx) {
                        return Poll::Ready(Event::Directive(d));
                    }
                    return self.pending(cx, backlog);
                }
            }
        }
    }

    /// Ends a poll with the task's waker left in the outbox. A read-side
    /// wake-up that came during this poll, after the read side was polled and
    /// while the outbox held no waker (a push had taken it), marked the read
    /// side but woke no one: come back for it. (Not while the reply backlog
    /// holds reads back: its end wakes the task.)
    fn pending(&self, cx: &Context<'_>, backlog: bool) -> Poll<Event> {
        if !backlog && self.outbox.read_ready() {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// Hands a batch to the carrier. The delivery-latency histogram is
    /// observed once per batch, for its oldest publication (the batch's
    /// latency): observing every frame took the histogram's lock per
    /// delivery, 1 % of the hub's time in a 10,000-subscriber fan-out, and
    /// at low rates a batch is one frame anyway.
    fn queue_batch<T: Transport>(&self, ws: &mut T, batch: &mut Vec<Queued>) {
        let metrics = self.hub.metrics();
        let mut bytes = 0;
        let mut oldest: Option<Instant> = None;
        let count: usize = batch.iter().map(|q| q.frame.messages()).sum();
        for q in batch.drain(..) {
            if ws.queue(&q.frame).is_err() {
                break;
            }
            bytes += q.frame.len();
            if let Some(at) = q.published {
                oldest = Some(oldest.map_or(at, |o| o.min(at)));
            }
        }
        if let Some(at) = oldest {
            metrics.delivery_latency.observe(at.elapsed().as_secs_f64());
        }
        metrics.messages_out.inc_by(count as u64);
        metrics.bytes_out.inc_by(bytes as u64);
    }

    async fn finish<T: Transport>(&mut self, ws: &mut T, ending: Ending) {
        // Replies queued before the end still go out (a slow consumer's queue
        // was dropped already).
        let mut batch = Vec::new();
        self.outbox.take_all(&mut batch);
        self.queue_batch(ws, &mut batch);
        let (code, reason) = match ending {
            Ending::Disconnect(code, after, reason) => {
                if code == DisconnectCode::SlowConsumer {
                    self.hub.metrics().slow_consumer_disconnects.inc();
                }
                let reason: Arc<str> = reason.unwrap_or_else(|| code.reason().into());
                let push = text_frame(protocol::disconnect_push(code, Some(&reason), after));
                let _ = ws.queue(&OutFrame::One(push));
                (code.code(), reason)
            }
            Ending::AfterReply(code) => {
                // After the reply that explains it, a WebSocket's Close frame
                // carries the code; a fallback has no Close frame, so it gets
                // the push (docs/protocol.md §2.5).
                if !T::HAS_CLOSE_CODE {
                    let push = text_frame(protocol::disconnect_push(code, None, None));
                    let _ = ws.queue(&OutFrame::One(push));
                }
                (code.code(), code.reason().into())
            }
            Ending::GoingAway => (1001, "going away".into()),
        };
        self.hub
            .metrics()
            .disconnects
            .get_or_create(&crate::metrics::DisconnectLabels { code })
            .inc();
        ws.close(code, &reason).await;
    }

    async fn cleanup(&mut self, ip: IpAddr) {
        // Stop deliveries first, then release the registry entry.
        self.outbox.disconnect(Directive::GoingAway);
        self.forget_unsubscribed();
        let subscriptions = std::mem::take(&mut self.subscriptions);
        for channel in subscriptions.keys() {
            if let Ok(options) = self.hub.namespace_of(channel) {
                let _ = self.hub.unsubscribe(channel, options, self.key).await;
            }
            self.hub.metrics().subscriptions.dec();
        }
        let client = self.session.as_ref().map(|s| (&s.client, &s.user));
        self.hub.leave(self.key, ip, client);
    }

    fn arm_expiry(&mut self, expires: Option<Instant>) {
        self.deadline = expires
            .map(|at| Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(at))));
    }

    fn reply_json(&self, json: String) {
        self.outbox.reply(text_frame(json));
    }

    fn reply<T: serde::Serialize>(&self, id: u64, result: &T) {
        self.reply_json(protocol::reply(id, result));
    }

    fn error(&self, id: u64, code: ErrorCode) {
        self.reply_json(protocol::error_reply(id, code));
    }

    /// Forgets the subscriptions the server ended (§7.4; the metric was
    /// updated then).
    fn forget_unsubscribed(&mut self) {
        for channel in self.outbox.take_unsubscribed() {
            self.subscriptions.remove(&channel);
        }
    }

    /// Handles one client message; `Some` ends the connection.
    async fn handle(&mut self, text: &str) -> Option<Ending> {
        self.forget_unsubscribed();
        let bad_request = Some(Ending::Disconnect(DisconnectCode::BadRequest, None, None));
        let command = match protocol::parse_command(text) {
            Err(_) => return bad_request,
            Ok(Parsed::NoMethod(id)) => {
                if self.session.is_none() {
                    return bad_request;
                }
                self.error(id, ErrorCode::BadRequest);
                return None;
            }
            Ok(Parsed::Command(c)) => c,
        };
        if self.session.is_none() {
            if command.method != "connect" {
                return bad_request;
            }
            return self.connect(&command);
        }
        if command.method == "connect" {
            return bad_request;
        }
        if !self.take_token() {
            self.error(command.id, ErrorCode::TooManyRequests);
            // More than a second's worth of refusals within a second: the
            // client is not backing off.
            let now = Instant::now();
            if now.duration_since(self.rejected_since) > Duration::from_secs(1) {
                self.rejected_since = now;
                self.rejected = 0;
            }
            self.rejected += 1;
            if self.rejected > self.hub.config().limits.commands_per_second {
                return Some(Ending::Disconnect(
                    DisconnectCode::RateLimited,
                    Some(1000),
                    None,
                ));
            }
            return None;
        }
        let id = command.id;
        let result = match command.method {
            "subscribe" => self.subscribe(&command).await,
            "unsubscribe" => self.unsubscribe(&command).await,
            "publish" => self.publish(&command).await,
            "presence" => self.presence(&command, false).await,
            "presence_stats" => self.presence(&command, true).await,
            "history" => self.history(&command).await,
            "refresh" => self.refresh(&command),
            "ping" => {
                self.reply(id, &serde_json::json!({}));
                Ok(())
            }
            _ => Err(ErrorCode::MethodNotFound),
        };
        if let Err(code) = result {
            self.error(id, code);
        }
        None
    }

    /// Token bucket: `commands_per_second` per second, as large a burst.
    fn take_token(&mut self) -> bool {
        let rate = f64::from(self.hub.config().limits.commands_per_second);
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn connect(&mut self, command: &Command<'_>) -> Option<Ending> {
        #[derive(Deserialize)]
        struct Params {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            #[allow(dead_code)]
            name: Option<String>,
            #[serde(default)]
            #[allow(dead_code)]
            version: Option<String>,
        }
        let fail = |this: &Self, error: ErrorCode, close: DisconnectCode| {
            this.error(command.id, error);
            Some(Ending::AfterReply(close))
        };
        let Some(params) = protocol::params::<Params>(command.params) else {
            return fail(self, ErrorCode::BadRequest, DisconnectCode::BadRequest);
        };
        let hub = self.hub.clone();
        let claims = match params.token.as_deref() {
            None | Some("") => {
                if !hub.config().allow_anonymous {
                    return fail(self, ErrorCode::Unauthorized, DisconnectCode::Unauthorized);
                }
                None
            }
            Some(token) => match hub.verifier().connect(token) {
                Ok(claims) => Some(claims),
                Err(e) => {
                    let error = commands::token_error(e);
                    let close = if error == ErrorCode::TokenExpired {
                        DisconnectCode::TokenExpired
                    } else {
                        DisconnectCode::Unauthorized
                    };
                    return fail(self, error, close);
                }
            },
        };
        let client: Arc<str> = new_client_id().into();
        let (user, conn_info, channels_claim, exp) = match claims {
            Some(ConnectClaims {
                sub,
                exp,
                info,
                channels,
            }) => (Arc::from(sub), info, channels, exp),
            None => (ANONYMOUS.clone(), None, None, None),
        };
        let (expires, expires_in_ms) = expiry(exp);
        if let Err(error) = hub.register_client(self.key, &client, &user) {
            return fail(self, error, DisconnectCode::ConnectionLimit);
        }
        let l = &hub.config().limits;
        let mut result = serde_json::json!({
            "client": &*client,
            "user": &*user,
            "version": VERSION,
            "ping_interval_ms": l.ping_interval_ms,
            "pong_timeout_ms": l.pong_timeout_ms,
            "max_message_size": l.max_message_size,
        });
        if let Some(ms) = expires_in_ms {
            result["expires_in_ms"] = ms.into();
        }
        self.reply(command.id, &result);
        self.session = Some(Session {
            client,
            user,
            conn_info,
            channels_claim: channels_claim.map(Vec::into_boxed_slice),
            expires,
        });
        self.arm_expiry(expires);
        None
    }

    fn refresh(&mut self, command: &Command<'_>) -> Result<(), ErrorCode> {
        #[derive(Deserialize)]
        struct Params {
            token: String,
        }
        let params: Params = protocol::params(command.params).ok_or(ErrorCode::BadRequest)?;
        let hub = self.hub.clone();
        let session = self.session.as_mut().ok_or(ErrorCode::Internal)?;
        if session.user.is_empty() {
            return Err(ErrorCode::NotAvailable);
        }
        let claims = hub
            .verifier()
            .connect(&params.token)
            .map_err(commands::token_error)?;
        if *claims.sub != *session.user {
            return Err(ErrorCode::Unauthorized);
        }
        let (expires, expires_in_ms) = expiry(claims.exp);
        session.expires = expires;
        session.conn_info = claims.info;
        session.channels_claim = claims.channels.map(Vec::into_boxed_slice);
        self.arm_expiry(expires);
        let mut result = serde_json::json!({});
        if let Some(ms) = expires_in_ms {
            result["expires_in_ms"] = ms.into();
        }
        self.reply(command.id, &result);
        Ok(())
    }

    async fn subscribe(&mut self, command: &Command<'_>) -> Result<(), ErrorCode> {
        #[derive(Deserialize)]
        struct Params {
            channel: String,
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            recover: bool,
            #[serde(default)]
            epoch: Option<String>,
            #[serde(default)]
            offset: Option<u64>,
            #[serde(default)]
            presence: bool,
        }
        let p: Params = protocol::params(command.params).ok_or(ErrorCode::BadRequest)?;
        let parsed = channel::parse(&p.channel).ok_or(ErrorCode::BadRequest)?;
        let recover = match (p.recover, p.epoch, p.offset) {
            (false, _, _) => None,
            (true, Some(epoch), Some(offset)) => Some(StreamPosition { epoch, offset }),
            (true, _, _) => return Err(ErrorCode::BadRequest),
        };
        let hub = self.hub.clone();
        let options = hub.namespace_of(&p.channel)?;
        let session = self.session.as_ref().ok_or(ErrorCode::Internal)?;
        if self.subscriptions.contains_key(p.channel.as_str()) {
            return Err(ErrorCode::AlreadySubscribed);
        }
        if self.subscriptions.len() >= hub.config().limits.max_channels_per_connection {
            return Err(ErrorCode::TooManyChannels);
        }
        if session.user.is_empty() && !options.allow_anonymous {
            return Err(ErrorCode::PermissionDenied);
        }
        let granted = match &session.channels_claim {
            Some(list) => {
                if !list.contains(&p.channel) {
                    return Err(ErrorCode::PermissionDenied);
                }
                true
            }
            None => false,
        };
        let mut chan_info = None;
        if parsed.private && !granted {
            let token = p.token.as_deref().ok_or(ErrorCode::PermissionDenied)?;
            let claims = hub
                .verifier()
                .subscribe(token, &session.user, &p.channel)
                .map_err(commands::token_error)?;
            chan_info = claims.info;
        }
        let subscriber = Subscriber {
            key: self.key,
            outbox: self.outbox.clone(),
            info: session.info(chan_info.as_ref()),
        };
        let request = SubscribeRequest {
            recover,
            presence: p.presence,
        };
        let id = command.id;
        hub.subscribe(
            &p.channel,
            options,
            subscriber,
            request,
            Box::new(move |outcome| text_frame(protocol::reply(id, outcome))),
        )
        .await
        .map_err(|e| match e {
            SubscribeError::Budget { .. } => {
                tracing::debug!("subscribe {}: {e}", p.channel);
                ErrorCode::LimitExceeded
            }
            e => {
                tracing::warn!("subscribe {}: {e}", p.channel);
                ErrorCode::Internal
            }
        })?;
        self.subscriptions.insert(p.channel.into(), chan_info);
        hub.metrics().subscriptions.inc();
        Ok(())
    }

    async fn unsubscribe(&mut self, command: &Command<'_>) -> Result<(), ErrorCode> {
        let channel = channel_param(command)?;
        if self.subscriptions.remove(&channel).is_none() {
            return Err(ErrorCode::NotSubscribed);
        }
        let hub = self.hub.clone();
        let options = hub.namespace_of(&channel)?;
        hub.metrics().subscriptions.dec();
        hub.unsubscribe(&channel, options, self.key)
            .await
            .map_err(|_| ErrorCode::Internal)?;
        self.reply(command.id, &serde_json::json!({}));
        Ok(())
    }

    async fn publish(&mut self, command: &Command<'_>) -> Result<(), ErrorCode> {
        #[derive(Deserialize)]
        struct Params {
            channel: String,
            data: Box<RawValue>,
        }
        let p: Params = protocol::params(command.params).ok_or(ErrorCode::BadRequest)?;
        let hub = self.hub.clone();
        let options = hub.namespace_of(&p.channel)?;
        let chan_info = self
            .subscriptions
            .get(p.channel.as_str())
            .ok_or(ErrorCode::NotSubscribed)?;
        if !options.allow_publish {
            return Err(ErrorCode::PermissionDenied);
        }
        let session = self.session.as_ref().ok_or(ErrorCode::Internal)?;
        let info = session.info(chan_info.as_ref());
        let result = commands::publish(&hub, &p.channel, p.data, Some(info)).await?;
        self.reply(command.id, &result);
        Ok(())
    }

    async fn presence(&mut self, command: &Command<'_>, stats: bool) -> Result<(), ErrorCode> {
        let channel = channel_param(command)?;
        let hub = self.hub.clone();
        hub.namespace_of(&channel)?;
        if !self.subscriptions.contains_key(channel.as_str()) {
            return Err(ErrorCode::NotSubscribed);
        }
        let result = commands::presence(&hub, &channel, stats).await?;
        self.reply(command.id, &result);
        Ok(())
    }

    async fn history(&mut self, command: &Command<'_>) -> Result<(), ErrorCode> {
        let p: HistoryParams = protocol::params(command.params).ok_or(ErrorCode::BadRequest)?;
        let hub = self.hub.clone();
        hub.namespace_of(&p.channel)?;
        if !self.subscriptions.contains_key(p.channel.as_str()) {
            return Err(ErrorCode::NotSubscribed);
        }
        let result = commands::history(&hub, &p).await?;
        let frame = text_frame(protocol::reply(command.id, &result));
        // Up to a history's worth of publications: charged to the hub's
        // budget like a recovery; when it cannot be, the client asks again
        // later (or, past what the budget ever admits, with a smaller limit).
        if !result.publications.is_empty() && !self.outbox.charge_reply(frame.len()) {
            tracing::debug!(
                "history {}: {} bytes over the budget",
                p.channel,
                frame.len()
            );
            return Err(ErrorCode::LimitExceeded);
        }
        self.outbox.reply(frame);
        Ok(())
    }
}

fn channel_param(command: &Command<'_>) -> Result<String, ErrorCode> {
    #[derive(Deserialize)]
    struct Params {
        channel: String,
    }
    let p: Params = protocol::params(command.params).ok_or(ErrorCode::BadRequest)?;
    channel::parse(&p.channel).ok_or(ErrorCode::BadRequest)?;
    Ok(p.channel)
}

/// The session's expiry as an instant, and the milliseconds to it.
fn expiry(exp: Option<u64>) -> (Option<Instant>, Option<u64>) {
    let Some(exp) = exp else {
        return (None, None);
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let left = Duration::from_secs(exp).saturating_sub(now);
    (Some(Instant::now() + left), Some(left.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    /// An idle connection's task is its future: keep it near the WebSocket's
    /// own size (it was 2112 bytes before the command handlers were boxed
    /// and the arguments stored once, 392 bytes more than the WebSocket
    /// before the loop was reshaped).
    #[tokio::test]
    async fn an_idle_connection_future_stays_small() {
        let hub = crate::Hub::new(crate::HubConfig::default()).unwrap();
        let (a, _b) = tokio::io::duplex(64);
        let ws =
            volley::WebSocket::from_raw_socket(a, volley::Role::Server, hub.ws_config().clone());
        let ws_size = std::mem::size_of_val(&ws);
        let outbox = std::sync::Arc::new(crate::outbox::Outbox::new(
            1000,
            std::sync::Arc::new(crate::QueueBudget::new(
                1000,
                Default::default(),
                Default::default(),
            )),
        ));
        let fut = super::run(
            hub.clone(),
            ws,
            1,
            outbox,
            std::net::IpAddr::from([127, 0, 0, 1]),
        );
        let size = std::mem::size_of_val(&fut);
        // 264 bytes beside the WebSocket: the connection's state (176) and
        // the loop's (64, after the event is taken apart before any await
        // and a command's future owns its message).
        assert!(
            size <= ws_size + 272,
            "{size} bytes for a {ws_size}-byte WebSocket"
        );
    }
}

//! This node's subscribers, and delivery to them.
//!
//! The broker hands the hub each channel's publications in the order it
//! received them; this module encodes each one once and queues the same frame
//! to every local subscriber. For channels with history it also keeps the
//! highest position delivered, and checks every publication against it:
//!
//! - the next offset is delivered;
//! - an offset already delivered is a duplicate (a history read and the
//!   broker's live delivery overlap) and is dropped, unless the live
//!   delivery itself went back, which means the stream lost its last
//!   publications (a Redis failover): the stream is then treated as lost;
//! - an offset past the next one is a hole: it is filled from history, in
//!   order, while later publications wait; when history cannot fill it, the
//!   channel's subscribers are disconnected with 4005 (insufficient state)
//!   so that they reconnect and recover, with `recovered: false` if need be;
//! - another epoch means the stream was lost (expiry, a Redis restart
//!   without persistence): 4005 as well.
//!
//! A new subscriber is registered first and collects what arrives while its
//! recovery is read; its reply is queued, then what it collected past the
//! recovered position, so the reply comes before any of its pushes and no
//! publication falls between them. The node's position can be behind the
//! reply's (the read saw publications whose live message is still on its
//! way, or a hole being filled): the subscriber skips what its reply
//! covered. What it collected, or is queued after its reply, in an epoch
//! other than its reply's (a late publication of a lost stream, or the
//! stream changed again) makes it recover: 4005.
//!
//! A server's hub delivers through its connection threads (`crate::lane`,
//! one or more): each channel's subscribers are kept by the lane their
//! connection runs on, and delivery
//! hands the frame to each lane, which queues it to its own subscribers on
//! its own thread. Everything above still happens here, under the channel's
//! lock and in order; a lane only does the last step, in the order it was
//! handed the frames, so a subscriber still gets them in order, after its
//! reply.
//!
//! Lock order (a thread that holds one of these takes only later ones):
//! the memory engine's shard lock (a publication, a join or leave), then a
//! shard of this module's channel map, then a subscriber's outbox. The
//! memory engine's sets of subscribed channels are taken last, with nothing
//! else taken while one is held: this module subscribes and unsubscribes
//! the node under its own lock.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use volley::{PreparedFrame, PreparedFrames};

use crate::hub::text_frame;
use crate::key_order::KeyOrder;
use crate::lane::{self, Delivery, Senders, Wakeup};
use crate::outbox::{Directive, FrameRef, Next, Outbox};
use crate::protocol::{self, ClientInfo, DisconnectCode, Publication};
use crate::sync::lock;

const SHARDS: usize = 32;

/// A frame collected by a subscriber whose subscribe is under way: its
/// publication's position (epoch and offset, in a channel with history),
/// the frame, the publication's time.
type Collected = (Option<(Arc<str>, u64)>, PreparedFrame, Option<Instant>);

/// A publication waiting for a hole before it to be filled: its epoch, the
/// publication, its time.
type Waiting = (Arc<str>, Arc<Publication>, Instant);

/// One shard of the channel map.
type Channels = HashMap<Box<str>, Channel>;

/// One subscription of one connection on this node.
#[derive(Debug)]
pub(crate) struct Local {
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) info: ClientInfo,
    /// While the subscribe is under way: frames that arrived meanwhile, with
    /// their offsets. Boxed: one pointer in every subscriber's entry rather
    /// than a `Vec`'s three words for a list that is gone once subscribed.
    #[allow(clippy::box_collection)]
    pending: Option<Box<Vec<Collected>>>,
    /// The position its subscribe reply covered (the recovered
    /// publications, or the position it starts from: epoch and top offset),
    /// until a publication past it is delivered. The node's position can be
    /// behind it (the reply's read saw publications whose live message has
    /// not arrived, or that a hole's fill has not delivered yet): those are
    /// not delivered to this subscriber again. A delivery of another epoch
    /// meanwhile makes it recover (see `deliver_to`).
    covered: Option<(Arc<str>, u64)>,
}

impl Local {
    /// Disconnects the subscriber with 4005 (insufficient state): it
    /// reconnects and recovers from its last position.
    fn must_recover(&self) {
        self.outbox.disconnect(Directive::Disconnect(
            DisconnectCode::InsufficientState,
            None,
            None,
        ));
    }
}

/// Where a channel's node-level broker subscription stands.
pub(crate) type Ready = tokio::sync::watch::Receiver<Option<bool>>;

/// One lane's subscribers of a channel, by connection key, walked in key
/// order (`crate::key_order`: the order their connections, outboxes and
/// sockets were made in).
type LaneSubscribers = HashMap<u64, Local, KeyOrder>;

/// A channel's subscribers on this node, by the lane their connection runs
/// on (one map when the hub has no lanes).
#[derive(Debug)]
pub(crate) struct Subscribers(Box<[LaneSubscribers]>);

impl Subscribers {
    fn new(lanes: usize) -> Self {
        Self((0..lanes.max(1)).map(|_| HashMap::default()).collect())
    }

    /// Adds a subscriber to the calling thread's lane.
    fn insert(&mut self, key: u64, local: Local) {
        let lane = lane::current() % self.0.len();
        self.0[lane].insert(key, local);
    }

    fn get_mut(&mut self, key: u64) -> Option<&mut Local> {
        self.0.iter_mut().find_map(|lane| lane.get_mut(&key))
    }

    fn remove(&mut self, key: u64) -> Option<Local> {
        self.0.iter_mut().find_map(|lane| lane.remove(&key))
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(HashMap::is_empty)
    }

    /// How many there are.
    pub(crate) fn len(&self) -> usize {
        self.0.iter().map(HashMap::len).sum()
    }

    fn values(&self) -> impl Iterator<Item = &Local> {
        self.0.iter().flat_map(HashMap::values)
    }
}

#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) subscribers: Subscribers,
    pub(crate) ready: Ready,
    /// Its name, shared with the deliveries handed to lanes.
    name: Arc<str>,
    /// Tells this state from an earlier one of the same channel (dropped
    /// when its last subscriber left) in deliveries handed to lanes.
    generation: u64,
    /// The lanes' queues, when the hub has lanes.
    lanes: Option<Senders>,
    /// The highest position delivered (or read), for channels with history.
    position: Option<(Arc<str>, u64)>,
    /// The highest offset received live from the broker in `position`'s
    /// epoch: live delivery is in order, so going back means the stream went
    /// back.
    live_top: u64,
    /// An epoch found lost: its publications are dropped.
    lost_epoch: Option<Arc<str>>,
    /// A hole is being filled; publications that arrive meanwhile wait here.
    filling: Option<Vec<Waiting>>,
}

/// What the caller must do after a channel's state changed (outside the
/// lock).
#[derive(Debug)]
pub(crate) enum Action {
    /// Nothing.
    None,
    /// Read history after this position and call [`Fanout::filled`].
    Fill(Arc<str>, u64),
    /// The stream in this epoch went back: end it in the broker.
    Reset(Arc<str>),
}

impl Channel {
    fn new(name: &str, ready: Ready, generation: u64, lanes: Option<Senders>) -> Self {
        Self {
            subscribers: Subscribers::new(lanes.as_ref().map_or(1, |l| l.len())),
            ready,
            name: name.into(),
            generation,
            lanes,
            position: None,
            live_top: 0,
            lost_epoch: None,
            filling: None,
        }
    }

    /// Queues a frame to every subscriber: through the lanes when the hub
    /// has them, each queueing it to its own share, else here.
    fn deliver_frame(
        &mut self,
        position: Option<(&Arc<str>, u64)>,
        frame: &PreparedFrame,
        at: Option<Instant>,
    ) {
        let position = position.map(|(epoch, offset)| (epoch.clone(), offset));
        let delivery = || Delivery {
            channel: self.name.clone(),
            generation: self.generation,
            position: position.clone(),
            frame: frame.clone(),
            at,
        };
        let Some(lanes) = &self.lanes else {
            let delivery = [delivery()];
            for subscribers in self.subscribers.0.iter_mut() {
                deliver_to(subscribers, &delivery, None);
            }
            return;
        };
        for (lane, subscribers) in self.subscribers.0.iter_mut().enumerate() {
            if subscribers.is_empty() {
                continue;
            }
            if let Some(Err(refused)) = lanes.get(lane).map(|queue| queue.send(delivery())) {
                // The lane has stopped (the server is ending): deliver here,
                // so that nothing is lost while its connections close.
                deliver_to(subscribers, &[refused.0], None);
            }
        }
    }

    /// Delivers a publication of `epoch` (`None` in a channel without
    /// history).
    fn deliver(
        &mut self,
        channel: &str,
        epoch: Option<&Arc<str>>,
        publication: &Publication,
        at: Instant,
    ) {
        let frame = text_frame(protocol::publication_push(channel, publication));
        self.deliver_frame(epoch.zip(publication.offset), &frame, Some(at));
    }

    /// Every subscriber (or every active one) must reconnect and recover.
    fn insufficient_state(&mut self, active_only: bool) {
        for local in self.subscribers.values() {
            if active_only && local.pending.is_some() {
                continue;
            }
            local.must_recover();
        }
        self.position = None;
        self.live_top = 0;
        self.filling = None;
    }

    /// A publication of a channel with history, from live delivery (`live`)
    /// or from a history read filling a hole.
    fn offer(
        &mut self,
        channel: &str,
        epoch: Arc<str>,
        publication: Arc<Publication>,
        at: Instant,
        live: bool,
    ) -> Action {
        let Some(offset) = publication.offset else {
            self.deliver(channel, None, &publication, at);
            return Action::None;
        };
        if self.lost_epoch.as_ref() == Some(&epoch) {
            return Action::None;
        }
        let Some((current, top)) = self.position.clone() else {
            if let Some(buffer) = &mut self.filling {
                buffer.push((epoch, publication, at));
                return Action::None;
            }
            self.deliver(channel, Some(&epoch), &publication, at);
            self.position = Some((epoch, offset));
            if live {
                self.live_top = offset;
            }
            return Action::None;
        };
        if current != epoch {
            tracing::info!("{channel}: the stream's epoch changed, subscribers must recover");
            self.insufficient_state(false);
            return Action::None;
        }
        if live {
            if offset <= self.live_top {
                tracing::warn!(
                    "{channel}: the stream went back from offset {} to {offset} in epoch {epoch}: \
                     treating it as lost",
                    self.live_top
                );
                self.lost_epoch = Some(epoch.clone());
                self.insufficient_state(false);
                return Action::Reset(epoch);
            }
            self.live_top = offset;
            if let Some(buffer) = &mut self.filling {
                buffer.push((epoch, publication, at));
                return Action::None;
            }
        }
        if offset <= top {
            return Action::None;
        }
        if offset == top + 1 {
            self.deliver(channel, Some(&epoch), &publication, at);
            self.position = Some((epoch, offset));
            return Action::None;
        }
        // A hole after `top`.
        if !live {
            // History itself has a hole: nothing can fill it.
            self.insufficient_state(false);
            return Action::None;
        }
        self.filling = Some(vec![(epoch, publication, at)]);
        Action::Fill(current, top)
    }

    /// The highest position delivered (or read) in `epoch`.
    pub(crate) fn delivered_in(&self, epoch: &Arc<str>) -> Option<u64> {
        match &self.position {
            Some((current, top)) if current == epoch => Some(*top),
            _ => None,
        }
    }

    /// A history read's top in `epoch`: a top below what was delivered in
    /// the same epoch means the stream went back.
    pub(crate) fn check_top(&mut self, epoch: &Arc<str>, top: u64) -> Action {
        match &self.position {
            Some((current, delivered)) if current == epoch && top < *delivered => {
                tracing::warn!(
                    "stream went back from offset {delivered} to {top} in epoch {epoch}: \
                     treating it as lost"
                );
                self.lost_epoch = Some(epoch.clone());
                self.insufficient_state(false);
                Action::Reset(epoch.clone())
            }
            Some((current, _)) if current == epoch => Action::None,
            Some(_) => {
                // A new epoch: those who hold positions in the old one must
                // recover.
                self.insufficient_state(true);
                self.position = Some((epoch.clone(), top));
                Action::None
            }
            None => {
                if self.lost_epoch.as_ref() != Some(epoch) {
                    self.position = Some((epoch.clone(), top));
                }
                Action::None
            }
        }
    }
}

/// Queues the frames of these deliveries (of one channel, in its order) to
/// these subscribers: a subscriber whose subscribe is under way collects
/// them; one whose reply covered an offset skips it. Each subscriber's queue
/// takes them all at once: several as one entry, their frames joined once
/// for every subscriber that takes them all. Their tasks are woken at once,
/// or, given a lane's list (the subscribers of the calling thread's lane),
/// added to it: to be woken, or written to directly, in the lane's turns.
fn deliver_to(
    subscribers: &mut LaneSubscribers,
    deliveries: &[Delivery],
    mut lane: Option<&mut VecDeque<Wakeup>>,
) {
    let direct = lane.is_some();
    // Joined when the first subscriber takes them all.
    let mut joined: Option<PreparedFrames> = None;
    let oldest = deliveries.iter().filter_map(|d| d.at).min();
    for local in subscribers.values_mut() {
        if let Some(pending) = &mut local.pending {
            pending.extend(
                deliveries
                    .iter()
                    .map(|d| (d.position.clone(), d.frame.clone(), d.at)),
            );
            continue;
        }
        let (_, next) = match &local.covered {
            None if deliveries.len() > 1 => {
                let joined = joined.get_or_insert_with(|| {
                    PreparedFrames::join(deliveries.iter().map(|d| &d.frame))
                });
                local
                    .outbox
                    .push_many_quietly(std::iter::once((FrameRef::Joined(joined), oldest)), direct)
            }
            None => local.outbox.push_many_quietly(
                deliveries.iter().map(|d| (FrameRef::One(&d.frame), d.at)),
                direct,
            ),
            Some((epoch, _))
                if deliveries
                    .iter()
                    .any(|d| d.position.as_ref().is_some_and(|(e, _)| e != epoch)) =>
            {
                // Handed to the lane before the subscribe's read saw the
                // stream's new epoch (a late publication of a lost one), or
                // the stream changed again since the reply: the offsets do
                // not compare with the reply's. It must recover, as
                // `Fanout::activate` decides for what a subscriber collected.
                local.covered = None;
                local.must_recover();
                continue;
            }
            Some((_, covered)) => {
                let covered = *covered;
                // Delivery is in offset order: from the first offset past
                // the reply's top on, nothing is covered.
                let past = deliveries
                    .iter()
                    .position(|d| d.position.as_ref().is_some_and(|(_, o)| *o > covered))
                    .unwrap_or(deliveries.len());
                if past < deliveries.len() {
                    local.covered = None;
                }
                let frames = deliveries
                    .iter()
                    .enumerate()
                    .filter(move |(i, d)| *i >= past || d.position.is_none())
                    .map(|(_, d)| (FrameRef::One(&d.frame), d.at));
                local.outbox.push_many_quietly(frames, direct)
            }
        };
        match (next, lane.as_deref_mut()) {
            (Next::Nothing, _) => {}
            (Next::Wake(waker), None) => waker.wake(),
            (Next::Wake(waker), Some(lane)) => lane.push_back(Wakeup::Task(waker)),
            (Next::WriteDirect, Some(lane)) => {
                lane.push_back(Wakeup::Direct(local.outbox.clone()));
            }
            // Not asked for without a lane's list.
            (Next::WriteDirect, None) => {}
        }
    }
}

/// This node's subscribers, by channel.
#[derive(Debug)]
pub(crate) struct Fanout {
    shards: Box<[Mutex<Channels>]>,
    /// The lanes' queues, once the server started them.
    lanes: OnceLock<Senders>,
    /// The generation of the next channel state.
    generations: AtomicU64,
}

impl Fanout {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            lanes: OnceLock::new(),
            generations: AtomicU64::new(0),
        }
    }

    /// Delivers through these lanes from now on (channel states made after
    /// this call; the server installs them before it accepts a connection).
    /// A second call is ignored.
    pub(crate) fn install_lanes(&self, lanes: Senders) {
        let _ = self.lanes.set(lanes);
    }

    /// Deliveries of one channel handed to `lane`, in the channel's order:
    /// queues them to the lane's subscribers of the channel, if the
    /// channel's state is still the one they came from, and adds what their
    /// tasks need to `wakeups` (the lane wakes them, or writes for them, in
    /// turns). Returns how many frames were queued or collected (collecting
    /// subscribers included).
    pub(crate) fn deliver_in_lane(
        &self,
        lane: usize,
        deliveries: &[Delivery],
        wakeups: &mut VecDeque<Wakeup>,
    ) -> usize {
        let Some(first) = deliveries.first() else {
            return 0;
        };
        debug_assert!(
            deliveries
                .iter()
                .all(|d| d.channel == first.channel && d.generation == first.generation),
            "one channel state's deliveries"
        );
        let mut shard = self.shard(&first.channel);
        if let Some(state) = shard.get_mut(&*first.channel)
            && state.generation == first.generation
            && let Some(subscribers) = state.subscribers.0.get_mut(lane)
        {
            deliver_to(subscribers, deliveries, Some(wakeups));
            return subscribers.len() * deliveries.len();
        }
        0
    }

    pub(crate) fn shard(&self, channel: &str) -> MutexGuard<'_, Channels> {
        let mut h = DefaultHasher::new();
        channel.hash(&mut h);
        lock(&self.shards[(h.finish() as usize) % SHARDS])
    }

    /// Registers a subscriber that collects what arrives until
    /// [`Fanout::activate`]. `subscribe_node` starts the node's broker
    /// subscription when this is the channel's first subscriber on the node
    /// (called under the lock, so that it is ordered with unsubscribes).
    pub(crate) fn add_pending(
        &self,
        channel: &str,
        key: u64,
        outbox: Arc<Outbox>,
        info: ClientInfo,
        subscribe_node: impl FnOnce() -> Ready,
    ) -> Ready {
        let mut shard = self.shard(channel);
        let state = shard.entry(channel.into()).or_insert_with(|| {
            Channel::new(
                channel,
                subscribe_node(),
                self.generations.fetch_add(1, Ordering::Relaxed),
                self.lanes.get().cloned(),
            )
        });
        state.subscribers.insert(
            key,
            Local {
                outbox,
                info,
                pending: Some(Box::default()),
                covered: None,
            },
        );
        state.ready.clone()
    }

    /// Runs `f` on the channel's state, if the node has one.
    pub(crate) fn with<T>(&self, channel: &str, f: impl FnOnce(&mut Channel) -> T) -> Option<T> {
        self.shard(channel).get_mut(channel).map(f)
    }

    /// Queues the reply (made by `reply` from the recovered position, epoch
    /// and top, when the channel keeps history), then what the subscriber
    /// collected past it. A collected publication of another epoch than the
    /// reply's (a stream that was lost, or replaced, while the recovery was
    /// read) cannot be placed after the reply: the subscriber is told to
    /// recover (4005) instead of receiving it. Returns `false` when the
    /// subscriber is gone.
    pub(crate) fn activate(
        &self,
        channel: &str,
        key: u64,
        recovered: Option<(Arc<str>, u64)>,
        reply: PreparedFrame,
    ) -> bool {
        let mut shard = self.shard(channel);
        let Some(local) = shard
            .get_mut(channel)
            .and_then(|s| s.subscribers.get_mut(key))
        else {
            return false;
        };
        local.outbox.reply(reply);
        let collected = local.pending.take().map(|p| *p).unwrap_or_default();
        if let Some((epoch, _)) = &recovered
            && collected
                .iter()
                .any(|(position, _, _)| position.as_ref().is_some_and(|(e, _)| e != epoch))
        {
            tracing::info!(
                "{channel}: the stream changed epoch while a subscribe read it; the subscriber must recover"
            );
            local.must_recover();
            return true;
        }
        local.covered = recovered;
        for (position, frame, at) in collected {
            let offset = position.map(|(_, offset)| offset);
            let newer = match (offset, &local.covered) {
                (Some(offset), Some((_, top))) => offset > *top,
                _ => true,
            };
            if newer {
                if offset.is_some() {
                    local.covered = None;
                }
                local.outbox.push(&frame, at);
            }
        }
        true
    }

    /// Removes a subscriber; returns it, and whether the channel has no
    /// subscriber left on this node (its state is then dropped, and the
    /// caller calls `unsubscribe_node` under the lock).
    pub(crate) fn remove(
        &self,
        channel: &str,
        key: u64,
        unsubscribe_node: impl FnOnce(),
    ) -> Option<Local> {
        let mut shard = self.shard(channel);
        let state = shard.get_mut(channel)?;
        let local = state.subscribers.remove(key)?;
        if state.subscribers.is_empty() {
            shard.remove(channel);
            unsubscribe_node();
        }
        Some(local)
    }

    /// A publication from the broker.
    pub(crate) fn publication(
        &self,
        channel: &str,
        epoch: Option<Arc<str>>,
        publication: Arc<Publication>,
        at: Instant,
    ) -> Action {
        let mut shard = self.shard(channel);
        let Some(state) = shard.get_mut(channel) else {
            return Action::None;
        };
        match epoch {
            Some(epoch) => state.offer(channel, epoch, publication, at, true),
            None => {
                state.deliver(channel, None, &publication, at);
                Action::None
            }
        }
    }

    /// A join or leave from the broker.
    pub(crate) fn presence_push(&self, channel: &str, kind: &'static str, info: &ClientInfo) {
        let mut shard = self.shard(channel);
        if let Some(state) = shard.get_mut(channel) {
            let frame = text_frame(protocol::presence_push(kind, channel, info));
            state.deliver_frame(None, &frame, None);
        }
    }

    /// The history read of a fill started by [`Action::Fill`] from `from`.
    pub(crate) fn filled(
        &self,
        channel: &str,
        from: (Arc<str>, u64),
        read: Option<(Arc<str>, u64, Vec<Arc<Publication>>)>,
    ) -> Action {
        let mut shard = self.shard(channel);
        let Some(state) = shard.get_mut(channel) else {
            return Action::None;
        };
        let buffered = state.filling.take().unwrap_or_default();
        let Some((epoch, top, publications)) = read else {
            state.insufficient_state(false);
            return Action::None;
        };
        if epoch != from.0 {
            state.insufficient_state(false);
            return Action::None;
        }
        if let Action::Reset(e) = state.check_top(&epoch, top) {
            return Action::Reset(e);
        }
        let now = Instant::now();
        for publication in publications {
            if let Action::Reset(e) = state.offer(channel, epoch.clone(), publication, now, false) {
                return Action::Reset(e);
            }
            if state.position.is_none() {
                // Signalled: nothing more to deliver.
                return Action::None;
            }
        }
        let mut buffered = buffered.into_iter();
        while let Some((epoch, publication, at)) = buffered.next() {
            // Already counted as live when they arrived.
            match state.offer(channel, epoch, publication, at, false) {
                Action::None => {}
                other => return other,
            }
            if state.position.is_none() {
                return Action::None;
            }
            if let Some((e, top)) = &state.position
                && let Some(next) = buffered.as_slice().first()
                && next.1.offset.is_some_and(|o| o > top + 1)
                && *e == next.0
            {
                // Still a hole: fill again.
                let (e, top) = (e.clone(), *top);
                state.filling = Some(buffered.collect());
                return Action::Fill(e, top);
            }
        }
        Action::None
    }

    /// The positions to check after a broker reconnect.
    pub(crate) fn positions(&self, channels: &[String]) -> Vec<(String, Arc<str>, u64)> {
        let mut out = Vec::new();
        for channel in channels {
            let mut shard = self.shard(channel);
            if let Some(state) = shard.get_mut(channel.as_str()) {
                if state.filling.is_some() {
                    continue;
                }
                if let Some((epoch, top)) = state.position.clone() {
                    state.filling = Some(Vec::new());
                    out.push((channel.clone(), epoch, top));
                }
            }
        }
        out
    }

    /// Every channel with subscribers on this node, and how many.
    pub(crate) fn counts(&self) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            for (name, state) in lock(shard).iter() {
                out.push((name.to_string(), state.subscribers.len()));
            }
        }
        out
    }

    /// The presence entries of this node's subscribers in these channels.
    pub(crate) fn presence_entries(
        &self,
        wants: impl Fn(&str) -> bool,
    ) -> Vec<(String, ClientInfo)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            for (name, state) in lock(shard).iter() {
                if wants(name) {
                    for local in state.subscribers.values() {
                        out.push((name.to_string(), local.info.clone()));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll, Waker};

    use volley::Message;

    use super::*;
    use crate::budget::QueueBudget;

    fn subscriber(fanout: &Fanout) -> Arc<Outbox> {
        pending(fanout, "chat:x", 1)
    }

    /// A subscriber of `channel` whose subscribe is under way.
    pub(super) fn pending(fanout: &Fanout, channel: &str, key: u64) -> Arc<Outbox> {
        let budget = Arc::new(QueueBudget::new(
            1 << 20,
            Default::default(),
            Default::default(),
        ));
        let outbox = Arc::new(Outbox::new(1 << 20, budget));
        let info = ClientInfo {
            client: "c1".into(),
            user: "".into(),
            conn_info: None,
            chan_info: None,
        };
        let (_tx, ready) = tokio::sync::watch::channel(Some(true));
        fanout.add_pending(channel, key, outbox.clone(), info, || ready);
        outbox
    }

    pub(super) fn publication(offset: u64) -> Arc<Publication> {
        Arc::new(Publication {
            offset: Some(offset),
            data: serde_json::value::RawValue::from_string(offset.to_string()).unwrap(),
            info: None,
        })
    }

    fn reply() -> PreparedFrame {
        PreparedFrame::new(&Message::text("reply"))
    }

    /// (frames queued, the directive pending)
    fn queued(outbox: &Outbox) -> (usize, Poll<Directive>) {
        let mut out = Vec::new();
        outbox.take_all(&mut out);
        let mut cx = Context::from_waker(Waker::noop());
        (out.len(), outbox.poll_directive(&mut cx))
    }

    /// Every subscriber is an entry of its channel's hash map (with the
    /// map's slack, about 1.6 entries per subscriber at 10,000): keep the
    /// entry small (it was 120 bytes before `pending` was boxed; 104 before
    /// `covered` kept its epoch).
    #[test]
    fn a_subscribers_entry_stays_small() {
        assert!(std::mem::size_of::<(u64, Local)>() <= 112);
    }

    #[test]
    fn a_publication_of_a_lost_epoch_collected_during_a_subscribe_makes_the_subscriber_recover() {
        let fanout = Fanout::new();
        let outbox = subscriber(&fanout);
        // A late publication of the stream that was lost arrives while the
        // subscribe reads the new stream, which is at offset 0.
        let _ = fanout.publication(
            "chat:x",
            Some("old".into()),
            publication(508),
            Instant::now(),
        );
        assert!(fanout.activate("chat:x", 1, Some(("new".into(), 0)), reply()));
        assert_eq!(
            queued(&outbox),
            (
                1,
                Poll::Ready(Directive::Disconnect(
                    DisconnectCode::InsufficientState,
                    None,
                    None
                ))
            ),
            "the reply, then 4005; never offset 508 after a reply at offset 0"
        );
    }

    #[test]
    fn a_publication_of_the_replys_epoch_collected_during_a_subscribe_follows_the_reply() {
        let fanout = Fanout::new();
        let outbox = subscriber(&fanout);
        let _ = fanout.publication("chat:x", Some("e".into()), publication(6), Instant::now());
        let _ = fanout.publication("chat:x", Some("e".into()), publication(7), Instant::now());
        assert!(fanout.activate("chat:x", 1, Some(("e".into(), 6)), reply()));
        assert_eq!(
            queued(&outbox),
            (2, Poll::Pending),
            "the reply (covering 6), then 7"
        );
    }
}

#[cfg(test)]
mod lane_tests {
    use std::task::{Context, Poll, Waker};

    use tokio::sync::mpsc::unbounded_channel;
    use volley::Message;

    use super::*;

    fn active_subscriber(fanout: &Fanout, channel: &str, key: u64) -> Arc<Outbox> {
        let outbox = super::tests::pending(fanout, channel, key);
        let reply = PreparedFrame::new(&Message::text("reply"));
        assert!(fanout.activate(channel, key, None, reply));
        outbox
    }

    fn frames(outbox: &Outbox) -> usize {
        let mut out = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0, false);
        out.len()
    }

    fn frame() -> PreparedFrame {
        PreparedFrame::new(&Message::text("push"))
    }

    #[test]
    fn a_delivery_goes_through_the_lane_and_only_to_the_state_it_came_from() {
        let fanout = Fanout::new();
        let (tx0, mut rx0) = unbounded_channel();
        let (tx1, _rx1) = unbounded_channel();
        fanout.install_lanes(vec![tx0, tx1].into());
        // This thread is lane 0.
        let outbox = active_subscriber(&fanout, "plain:x", 1);
        assert_eq!(frames(&outbox), 1, "the reply");
        fanout.with("plain:x", |state| state.deliver_frame(None, &frame(), None));
        assert_eq!(frames(&outbox), 0, "handed to the lane, not queued here");
        let delivery = rx0.try_recv().unwrap();
        assert_eq!(
            fanout.deliver_in_lane(0, &[delivery], &mut Default::default()),
            1
        );
        assert_eq!(frames(&outbox), 1, "queued by the lane");

        // The channel's state is dropped and made again before the lane
        // runs: the old delivery reaches no one.
        fanout.with("plain:x", |state| state.deliver_frame(None, &frame(), None));
        let stale = rx0.try_recv().unwrap();
        assert!(fanout.remove("plain:x", 1, || {}).is_some());
        let again = active_subscriber(&fanout, "plain:x", 2);
        assert_eq!(frames(&again), 1, "the reply");
        assert_eq!(
            fanout.deliver_in_lane(0, &[stale], &mut Default::default()),
            0
        );
        assert_eq!(frames(&again), 0);
    }

    #[test]
    fn deliveries_queued_together_are_joined_or_skip_only_what_the_reply_covered() {
        let fanout = Fanout::new();
        let (tx0, mut rx0) = unbounded_channel();
        fanout.install_lanes(vec![tx0].into());
        let outbox = super::tests::pending(&fanout, "chat:z", 1);
        assert!(fanout.activate("chat:z", 1, Some(("e".into(), 5)), frame()));
        let other = active_subscriber(&fanout, "chat:z", 2);
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0, false);
        assert_eq!(out.len(), 1, "the reply, covering offset 5");
        assert_eq!(frames(&other), 1, "the other's reply, covering nothing");

        // A presence push (no offset), then offsets 5 to 7, queued together.
        fanout.with("chat:z", |state| state.deliver_frame(None, &frame(), None));
        let first = rx0.try_recv().unwrap();
        let at = |offset: u64, text: &str| Delivery {
            position: Some(("e".into(), offset)),
            frame: PreparedFrame::new(&Message::text(text)),
            ..first.clone()
        };
        let presence = Delivery {
            frame: PreparedFrame::new(&Message::text("join")),
            ..first.clone()
        };
        let group = [presence, at(5, "five"), at(6, "six"), at(7, "seven")];
        assert_eq!(
            fanout.deliver_in_lane(0, &group, &mut Default::default()),
            8
        );
        out.clear();
        let _ = outbox.poll_take(&mut cx, &mut out, usize::MAX, 0, false);
        let texts: Vec<&[u8]> = out.iter().map(|q| &q.frame.as_bytes()[2..]).collect();
        assert_eq!(
            texts,
            [&b"join"[..], b"six", b"seven"],
            "offset 5 skipped (the reply had it), the rest in order"
        );
        out.clear();
        let _ = other.poll_take(&mut cx, &mut out, usize::MAX, 0, false);
        let [q] = &out[..] else {
            panic!("one entry, not {}", out.len());
        };
        assert_eq!(q.frame.messages(), 4, "all four, joined");
        let all: Vec<u8> = group
            .iter()
            .flat_map(|d| d.frame.as_bytes().to_vec())
            .collect();
        assert_eq!(q.frame.as_bytes(), all, "in order");
    }

    #[test]
    fn a_late_publication_of_a_lost_epoch_still_in_the_lane_makes_a_new_subscriber_recover() {
        let fanout = Fanout::new();
        let (tx0, mut rx0) = unbounded_channel();
        fanout.install_lanes(vec![tx0].into());
        let outbox = super::tests::pending(&fanout, "chat:w", 1);
        // A late publication of the lost stream, handed to the lane before
        // the subscribe's read found the new stream at offset 0 ...
        let _ = fanout.publication(
            "chat:w",
            Some("old".into()),
            super::tests::publication(2164),
            Instant::now(),
        );
        let late = rx0.try_recv().unwrap();
        assert!(fanout.activate("chat:w", 1, Some(("new".into(), 0)), frame()));
        assert_eq!(
            frames(&outbox),
            1,
            "the reply, at offset 0 of the new stream"
        );
        // ... and queued by the lane after the reply.
        let _ = fanout.deliver_in_lane(0, &[late], &mut Default::default());
        let mut out = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(
            outbox.poll_take(&mut cx, &mut out, usize::MAX, 0, false),
            Poll::Ready(Directive::Disconnect(
                DisconnectCode::InsufficientState,
                None,
                None
            )),
            "4005, to recover; never offset 2164 after a reply at offset 0"
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_stopped_lane_is_delivered_to_in_place() {
        let fanout = Fanout::new();
        let (tx0, rx0) = unbounded_channel();
        let (tx1, _rx1) = unbounded_channel();
        fanout.install_lanes(vec![tx0, tx1].into());
        let outbox = active_subscriber(&fanout, "plain:y", 1);
        assert_eq!(frames(&outbox), 1, "the reply");
        drop(rx0);
        fanout.with("plain:y", |state| state.deliver_frame(None, &frame(), None));
        assert_eq!(frames(&outbox), 1, "nothing is lost when the lane is gone");
    }
}

//! Connection threads ("lanes"): the hub's connections spread over several
//! threads, each a current-thread tokio runtime that owns its share of the
//! connections and runs the fan-out to them.
//!
//! A publication is handed once to each lane that has subscribers of its
//! channel ([`Delivery`]); the lane queues the shared frame to its own
//! subscribers, so the wake-ups of their tasks, and the writes those tasks
//! make, stay on the lane's thread. With one lane per core, the time to reach
//! the last subscriber divides by the cores, and no core waits on another for
//! a delivery (a task woken from another thread costs a lock and a system
//! call to wake its runtime; a task woken on its own thread costs neither).
//!
//! Lane 0 is the runtime that runs [`crate::Server::run`]; the others are
//! threads started by it and stopped when it returns. A hub that serves on
//! one thread has lane 0 alone. A lane wakes its subscribers' tasks in turns
//! of [`WAKE_TURN`], yielding between turns, so that a fan-out to 10,000
//! does not keep the thread's other tasks (an HTTP API request, another
//! channel's delivery) waiting until all 10,000 have written.
//!
//! A subscriber whose task is parked (it has written everything and waits)
//! is not woken at all: the lane writes to its socket itself
//! ([`Outbox::write_direct`], `crate::direct`), which saves the wake-up, the
//! task's poll and its copy of the frame. The lane's turns hold those
//! writes too.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::task::Waker;
use std::time::Instant;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use volley::PreparedFrame;

use crate::hub::Hub;
use crate::metrics::ThreadLabels;
use crate::outbox::{Outbox, Written};

thread_local! {
    /// The lane this thread runs (0 on any thread that is not a lane's).
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// The lane of the calling thread.
pub(crate) fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// A publication's frame for one lane's subscribers of a channel.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    /// The channel.
    pub(crate) channel: Arc<str>,
    /// The channel state's generation when the frame was handed over: a
    /// channel dropped and made again meanwhile has other subscribers.
    pub(crate) generation: u64,
    /// The publication's position (epoch and offset), in a channel with
    /// history.
    pub(crate) position: Option<(Arc<str>, u64)>,
    /// The encoded frame, shared with the other lanes.
    pub(crate) frame: PreparedFrame,
    /// When the publication entered the hub.
    pub(crate) at: Option<Instant>,
}

/// How many subscribers' tasks a lane wakes (or writes for) before it lets
/// the thread's other tasks run (a turn's writes take a few milliseconds).
const WAKE_TURN: usize = 256;

/// How many turns deliveries that arrive during a round of turns wait at
/// most before the lane queues them (all together): a few turns' worth of
/// subscribers, a fraction of a round to 10,000.
const HOLD_TURNS: usize = 8;

/// What a lane does for a subscriber it queued to, in its turn.
#[derive(Debug)]
pub(crate) enum Wakeup {
    /// Wake the subscriber's task, which writes.
    Task(Waker),
    /// Write for the subscriber's parked task.
    Direct(Arc<Outbox>),
}

/// The queues to every lane's fan-out task, by lane.
pub(crate) type Senders = Arc<[UnboundedSender<Delivery>]>;

/// The running lanes of a server, lane 0 excepted (it is the runtime that
/// runs the server). Dropping it stops their threads; connections still
/// open on them are dropped.
#[derive(Debug)]
pub(crate) struct Lanes {
    /// Lanes 1 and up: each one's runtime, and what stops its thread.
    threads: Vec<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>)>,
    /// Lane 0's queue, until [`Lanes::run_first`] starts its task.
    first: Option<UnboundedReceiver<Delivery>>,
    hub: Weak<Hub>,
}

impl Lanes {
    /// Starts lanes 1 to `count - 1`, each on its own thread, and installs
    /// every lane's queue in the hub's fan-out. Fails with the lane whose
    /// thread or runtime could not be started.
    pub(crate) fn start(hub: &Arc<Hub>, count: usize) -> Result<Self, (usize, std::io::Error)> {
        let mut senders = Vec::with_capacity(count);
        let (tx, first) = unbounded_channel();
        senders.push(tx);
        let mut lanes = Self {
            threads: Vec::with_capacity(count.saturating_sub(1)),
            first: Some(first),
            hub: Arc::downgrade(hub),
        };
        for lane in 1..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| (lane, e))?;
            let (tx, rx) = unbounded_channel();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let handle = runtime.handle().clone();
            let hub = Arc::downgrade(hub);
            std::thread::Builder::new()
                .name(format!("volley-lane-{lane}"))
                .spawn(move || {
                    CURRENT.with(|c| c.set(lane));
                    runtime.spawn(run(hub, lane, rx));
                    let _ = runtime.block_on(stopped);
                    // Connections still open are dropped with the runtime,
                    // at once (as the main runtime does at exit).
                    runtime.shutdown_background();
                })
                .map_err(|e| (lane, e))?;
            senders.push(tx);
            lanes.threads.push((handle, stop));
        }
        hub.fanout().install_lanes(senders.into());
        Ok(lanes)
    }

    /// Starts lane 0's fan-out task on the current runtime (once).
    pub(crate) fn run_first(&mut self) {
        if let Some(rx) = self.first.take() {
            tokio::spawn(run(self.hub.clone(), 0, rx));
        }
    }

    /// How many lanes there are, lane 0 included.
    pub(crate) fn count(&self) -> usize {
        self.threads.len() + 1
    }

    /// The runtime of lane `lane` (1 or more).
    pub(crate) fn handle(&self, lane: usize) -> Option<&tokio::runtime::Handle> {
        lane.checked_sub(1)
            .and_then(|i| self.threads.get(i))
            .map(|(handle, _)| handle)
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        for (_, stop) in self.threads.drain(..) {
            let _ = stop.send(());
        }
    }
}

/// A lane's fan-out task: queues the deliveries to the lane's subscribers,
/// then wakes their tasks in turns of [`WAKE_TURN`], oldest first, yielding
/// between turns so that the thread's other tasks (an API request, another
/// channel's delivery) run after at most a turn, not after every subscriber.
///
/// Deliveries that arrive while a round of turns is under way are queued
/// together, at most every [`HOLD_TURNS`] turns (and at once when the round
/// ends): each subscriber's queue then takes all of a channel's waiting
/// deliveries at once ([`Fanout::deliver_in_lane`](crate::fanout::Fanout::deliver_in_lane)).
/// A subscriber whose turn has not come yet writes them in this round; one
/// whose turn has passed is added to the next. That is how a busy hub
/// batches: the busier it is, the more frames each queueing and each write
/// carries.
async fn run(hub: Weak<Hub>, lane: usize, mut deliveries: UnboundedReceiver<Delivery>) {
    let Some((delivered, (messages_out, bytes_out, latency, direct_writes))) =
        hub.upgrade().map(|hub| {
            let thread = u32::try_from(lane).unwrap_or(u32::MAX);
            let delivered = hub
                .metrics()
                .thread_deliveries
                .get_or_create(&ThreadLabels { thread })
                .clone();
            let m = hub.metrics();
            let out = (
                m.messages_out.clone(),
                m.bytes_out.clone(),
                m.delivery_latency.clone(),
                m.direct_writes.clone(),
            );
            (delivered, out)
        })
    else {
        return;
    };
    let mut wakers = VecDeque::new();
    // Direct writes of several frames are copied into this, one at a time.
    let mut scratch = Vec::new();
    // Deliveries not queued yet, in the order they arrived.
    let mut held: Vec<Delivery> = Vec::new();
    // Turns since the last queueing.
    let mut turns = 0;
    // Queues what is held, a channel's consecutive deliveries together;
    // false once the hub is gone.
    let queue = |held: &mut Vec<Delivery>, wakers: &mut VecDeque<Wakeup>| -> bool {
        let Some(hub) = hub.upgrade() else {
            return false;
        };
        let mut rest = &held[..];
        while let Some(first) = rest.first() {
            let n = rest
                .iter()
                .take_while(|d| d.generation == first.generation && d.channel == first.channel)
                .count();
            let queued = hub.fanout().deliver_in_lane(lane, &rest[..n], wakers);
            delivered.inc_by(queued as u64);
            rest = &rest[n..];
        }
        held.clear();
        true
    };
    while let Some(delivery) = deliveries.recv().await {
        held.push(delivery);
        loop {
            while let Ok(delivery) = deliveries.try_recv() {
                held.push(delivery);
            }
            if !held.is_empty() && (wakers.is_empty() || turns >= HOLD_TURNS) {
                if !queue(&mut held, &mut wakers) {
                    return;
                }
                turns = 0;
            }
            if wakers.is_empty() {
                break;
            }
            let mut written = Written::default();
            for wakeup in wakers.drain(..WAKE_TURN.min(wakers.len())) {
                match wakeup {
                    Wakeup::Task(waker) => waker.wake(),
                    Wakeup::Direct(outbox) => {
                        if let Some(waker) = outbox.write_direct(&mut written, &mut scratch) {
                            waker.wake();
                        }
                    }
                }
            }
            // Counted as the tasks count what they write; the delivery
            // latency once per turn (for its oldest publication), as a task
            // observes it once per batch it writes.
            if written.writes > 0 {
                direct_writes.inc_by(written.writes);
                messages_out.inc_by(written.frames);
                bytes_out.inc_by(written.bytes);
            }
            if let Some(at) = written.oldest {
                latency.observe(at.elapsed().as_secs_f64());
            }
            tokio::task::yield_now().await;
            turns += 1;
        }
    }
}

//! The write wakers of a split [`WebSocket`](crate::WebSocket): both halves
//! may write (the receiving half answers pings and closes), so the transport
//! is given a waker that wakes every half waiting to write.

use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

/// Which half is polling (only matters after [`WebSocket::split`](crate::WebSocket::split)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Half {
    Read = 0,
    Write = 1,
}

/// Wakers of the halves waiting for the transport to accept writes.
#[derive(Default)]
pub(crate) struct WriteWakers {
    slots: Mutex<[Option<Waker>; 2]>,
}

impl WriteWakers {
    /// Records `waker` for `half` and returns a waker that wakes all.
    pub(crate) fn register(self: &Arc<Self>, half: Half, waker: &Waker) -> Waker {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut slots[half as usize];
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
        Waker::from(Arc::clone(self))
    }
}

impl Wake for WriteWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let taken: Vec<Waker> = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.iter_mut().filter_map(Option::take).collect()
        };
        for w in taken {
            w.wake();
        }
    }
}

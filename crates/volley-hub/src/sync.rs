//! Locking that survives a panic elsewhere: every structure the hub guards
//! with a mutex stays consistent between statements, so a poisoned lock is
//! used as it is rather than taking the node down.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, ignoring poisoning.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

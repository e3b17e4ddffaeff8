//! Synchronisation primitives for the loom-checked cores (epoch propose/commit, rundown).
//!
//! Under `RUSTFLAGS="--cfg loom"` these are loom's model-checked types; otherwise the std
//! ones. Only the small cores that loom explores use this module; the rest of the kernel uses
//! `parking_lot` directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicI64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning: a panic in the model is a test failure already, and the
/// guarded state stays consistent because every critical section is panic-free.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Waits on a condition variable, ignoring poisoning (see [`lock`]).
pub(crate) fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    match cv.wait(g) {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Keeps a per-CPU value on its own cache lines (no false sharing between CPUs).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CacheLine<T>(pub(crate) T);

impl<T> std::ops::Deref for CacheLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

//! NMR-like provider registration with rundown protection (`EX_RUNDOWN_REF`).
//!
//! Each custom map takes a rundown reference on its provider's registration for its whole
//! life; deregistering the provider first makes new acquisitions fail (new maps get
//! `EBPF_EXTENSION_FAILED_TO_LOAD`) and then waits until every reference is released.

use crate::modules::ModuleId;
use crate::provider::MapProvider;
use crate::sync::{Condvar, Mutex, lock, wait};
use parking_lot::Mutex as PlMutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[derive(Debug, Default)]
struct RundownState {
    refs: u64,
    closing: bool,
    cancelled: bool,
}

/// A rundown reference (loom-checked core).
#[derive(Debug, Default)]
pub(crate) struct Rundown {
    state: Mutex<RundownState>,
    drained: Condvar,
}

/// The wait was abandoned because the kernel stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cancelled;

impl Rundown {
    /// Takes a reference; false once rundown has begun (`ExAcquireRundownProtection`).
    pub(crate) fn acquire(&self) -> bool {
        let mut s = lock(&self.state);
        if s.closing {
            return false;
        }
        s.refs += 1;
        true
    }

    /// Drops a reference, waking the waiter when it was the last.
    pub(crate) fn release(&self) {
        let mut s = lock(&self.state);
        debug_assert!(s.refs > 0, "rundown released more often than acquired");
        s.refs = s.refs.saturating_sub(1);
        if s.refs == 0 && s.closing {
            self.drained.notify_all();
        }
    }

    /// Begins rundown without waiting (what a detach that skips the wait does).
    pub(crate) fn close(&self) {
        lock(&self.state).closing = true;
    }

    /// Begins rundown and blocks until every reference is released
    /// (`ExWaitForRundownProtectionRelease`), or until [`Rundown::cancel`].
    pub(crate) fn wait_for_release(&self) -> Result<(), Cancelled> {
        let mut s = lock(&self.state);
        s.closing = true;
        while s.refs > 0 {
            if s.cancelled {
                return Err(Cancelled);
            }
            s = wait(&self.drained, s);
        }
        Ok(())
    }

    /// Ends any wait (the kernel halted).
    pub(crate) fn cancel(&self) {
        lock(&self.state).cancelled = true;
        self.drained.notify_all();
    }

    #[cfg(test)]
    pub(crate) fn refs(&self) -> u64 {
        lock(&self.state).refs
    }
}

/// One provider registration: a map type served by a driver's provider.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) map_type: u32,
    pub(crate) provider: Arc<dyn MapProvider>,
    pub(crate) module: ModuleId,
    pub(crate) module_loaded: Arc<AtomicBool>,
    pub(crate) rundown: Rundown,
}

/// Providers by map type.
#[derive(Debug, Default)]
pub(crate) struct Nmr {
    providers: PlMutex<HashMap<u32, Arc<Registration>>>,
    /// Registrations whose deregistration has not finished (cancelled on halt).
    closing: PlMutex<Vec<Arc<Registration>>>,
}

impl Nmr {
    /// Registers a provider; false if the type already has one (STATUS_OBJECT_NAME_COLLISION).
    pub(crate) fn register(&self, reg: Arc<Registration>) -> bool {
        let mut p = self.providers.lock();
        if p.contains_key(&reg.map_type) {
            return false;
        }
        p.insert(reg.map_type, reg);
        true
    }

    /// Binds a new map to the provider of `map_type`, taking a rundown reference.
    pub(crate) fn attach(&self, map_type: u32) -> Option<Arc<Registration>> {
        let reg = self.providers.lock().get(&map_type).cloned()?;
        reg.rundown.acquire().then_some(reg)
    }

    /// Removes the registration so no new client binds; the caller then waits (or not).
    pub(crate) fn begin_deregister(&self, reg: &Arc<Registration>) {
        let mut p = self.providers.lock();
        if p.get(&reg.map_type).is_some_and(|r| Arc::ptr_eq(r, reg)) {
            p.remove(&reg.map_type);
        }
        self.closing.lock().push(reg.clone());
    }

    pub(crate) fn end_deregister(&self, reg: &Arc<Registration>) {
        self.closing.lock().retain(|r| !Arc::ptr_eq(r, reg));
    }

    /// Ends every pending rundown wait (the kernel stopped).
    pub(crate) fn cancel_all(&self) {
        for r in self.closing.lock().iter() {
            r.rundown.cancel();
        }
        for r in self.providers.lock().values() {
            r.rundown.cancel();
        }
    }

    #[cfg(test)]
    pub(crate) fn get(&self, map_type: u32) -> Option<Arc<Registration>> {
        self.providers.lock().get(&map_type).cloned()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn rundown_refuses_new_references_once_closing_and_waits_for_old_ones() {
        let r = Arc::new(Rundown::default());
        assert!(r.acquire());
        assert!(r.acquire());
        let waiter = {
            let r = r.clone();
            std::thread::spawn(move || r.wait_for_release())
        };
        while !lock(&r.state).closing {
            std::thread::yield_now();
        }
        assert!(!r.acquire(), "acquire after rundown began must fail");
        r.release();
        assert!(!waiter.is_finished());
        r.release();
        assert_eq!(waiter.join().unwrap(), Ok(()));
    }

    #[test]
    fn cancel_ends_the_wait() {
        let r = Arc::new(Rundown::default());
        assert!(r.acquire());
        let waiter = {
            let r = r.clone();
            std::thread::spawn(move || r.wait_for_release())
        };
        while !lock(&r.state).closing {
            std::thread::yield_now();
        }
        r.cancel();
        assert_eq!(waiter.join().unwrap(), Err(Cancelled));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Run: `RUSTFLAGS="--cfg loom" cargo test -p sim-kernel --release --lib loom`
    use super::*;
    use loom::sync::atomic::{AtomicUsize, Ordering};

    /// When the rundown wait returns, no reference is held and none can be taken.
    #[test]
    fn loom_rundown_wait_sees_every_release() {
        loom::model(|| {
            let r = loom::sync::Arc::new(Rundown::default());
            let live = loom::sync::Arc::new(AtomicUsize::new(0));
            let maps: Vec<_> = (0..2)
                .map(|_| {
                    let (r, live) = (r.clone(), live.clone());
                    loom::thread::spawn(move || {
                        if r.acquire() {
                            live.fetch_add(1, Ordering::SeqCst);
                            // ... the map lives, provider callbacks run ...
                            live.fetch_sub(1, Ordering::SeqCst);
                            r.release();
                        }
                    })
                })
                .collect();
            r.wait_for_release().unwrap();
            assert_eq!(
                live.load(Ordering::SeqCst),
                0,
                "a map still used the provider"
            );
            assert!(
                !r.acquire(),
                "a reference was taken after rundown completed"
            );
            for m in maps {
                m.join().unwrap();
            }
        });
    }
}

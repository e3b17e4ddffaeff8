//! NMR-like provider registration with rundown protection (`EX_RUNDOWN_REF`).
//!
//! Each custom map takes a rundown reference on its provider's registration for its whole
//! life; deregistering the provider first makes new acquisitions fail (new maps get
//! `EBPF_EXTENSION_FAILED_TO_LOAD`) and then waits until every reference is released.
//!
//! NMR does not know the provider's NPI: a registration carries the provider as an opaque
//! `Arc<P>` (maps use `P = dyn provider::MapProvider`), so this layer sits below maps.

use crate::base::HaltWake;
use crate::modules::ModuleId;
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
    /// Initialized again while in use (see [`Rundown::initialize_again`]).
    reinitialized: bool,
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
        // Wraps like the real count: after an underflow (#2010) an acquire can bring it
        // back through zero.
        s.refs = s.refs.wrapping_add(1);
        true
    }

    /// Drops a reference, waking the waiter when it was the last.
    pub(crate) fn release(&self) {
        let mut s = lock(&self.state);
        debug_assert!(
            s.refs > 0 || s.reinitialized,
            "rundown released more often than acquired"
        );
        // EX_RUNDOWN_REF does not check: a release of a zero count wraps it (upstream
        // #2010), and no wait for the release ever completes after that.
        s.refs = s.refs.wrapping_sub(1);
        // Wakes on every drop to zero, closing or not: a notify nobody waits for is cheap,
        // and "is anyone closing" was an optimisation no test could tell from its absence.
        if s.refs == 0 {
            self.drained.notify_all();
        }
    }

    /// `ExInitializeRundownProtection` on an object invocations may already hold (the
    /// upstream #2010 mistake): the count restarts at zero under its holders.
    pub(crate) fn initialize_again(&self) {
        let mut s = lock(&self.state);
        s.refs = 0;
        s.closing = false;
        s.reinitialized = true;
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

/// One provider registration: a map type served by a driver's provider `P`.
#[derive(Debug)]
pub(crate) struct Registration<P: ?Sized> {
    pub(crate) map_type: u32,
    pub(crate) provider: Arc<P>,
    pub(crate) module: ModuleId,
    pub(crate) module_loaded: Arc<AtomicBool>,
    pub(crate) rundown: Rundown,
}

/// Providers by map type.
#[derive(Debug)]
pub(crate) struct Nmr<P: ?Sized> {
    providers: PlMutex<HashMap<u32, Arc<Registration<P>>>>,
    /// Registrations whose deregistration has not finished (cancelled on halt).
    closing: PlMutex<Vec<Arc<Registration<P>>>>,
}

// Not derived: the derive would ask `P: Default`, which a provider trait object is not.
impl<P: ?Sized> Default for Nmr<P> {
    fn default() -> Self {
        Nmr {
            providers: PlMutex::default(),
            closing: PlMutex::default(),
        }
    }
}

impl<P: ?Sized> Nmr<P> {
    /// Registers a provider; false if the type already has one (STATUS_OBJECT_NAME_COLLISION).
    pub(crate) fn register(&self, reg: Arc<Registration<P>>) -> bool {
        let mut p = self.providers.lock();
        if p.contains_key(&reg.map_type) {
            return false;
        }
        p.insert(reg.map_type, reg);
        true
    }

    /// Binds a new map to the provider of `map_type`, taking a rundown reference.
    pub(crate) fn attach(&self, map_type: u32) -> Option<Arc<Registration<P>>> {
        let reg = self.providers.lock().get(&map_type).cloned()?;
        reg.rundown.acquire().then_some(reg)
    }

    /// Removes the registration so no new client binds; the caller then waits (or not).
    pub(crate) fn begin_deregister(&self, reg: &Arc<Registration<P>>) {
        let mut p = self.providers.lock();
        if p.get(&reg.map_type).is_some_and(|r| Arc::ptr_eq(r, reg)) {
            p.remove(&reg.map_type);
        }
        self.closing.lock().push(reg.clone());
    }

    pub(crate) fn end_deregister(&self, reg: &Arc<Registration<P>>) {
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
    pub(crate) fn get(&self, map_type: u32) -> Option<Arc<Registration<P>>> {
        self.providers.lock().get(&map_type).cloned()
    }
}

/// NMR's deregistration waits end when the kernel halts.
impl<P: ?Sized + Send + Sync + std::fmt::Debug> HaltWake for Nmr<P> {
    fn wake_on_halt(&self) {
        self.cancel_all();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! Rule tests of `EX_RUNDOWN_REF` and NMR deregistration, the heart of hot unload. Every
    //! wait is bounded: a model that stalls fails here within seconds, naming the wait.
    use super::*;
    use crate::bounded;

    /// NMR never looks inside a provider, so a unit provider stands in for a driver's.
    fn registration(map_type: u32) -> Arc<Registration<()>> {
        Arc::new(Registration {
            map_type,
            provider: Arc::new(()),
            module: ModuleId(1),
            module_loaded: Arc::new(AtomicBool::new(true)),
            rundown: Rundown::default(),
        })
    }

    fn closing(r: &Rundown) -> bool {
        lock(&r.state).closing
    }

    /// `ExWaitForRundownProtectionRelease` on its own thread; returns what it returned and
    /// the reference count it saw on return.
    fn start_wait(r: &Arc<Rundown>) -> std::thread::JoinHandle<(Result<(), Cancelled>, u64)> {
        let r = r.clone();
        std::thread::spawn(move || {
            let res = r.wait_for_release();
            (res, r.refs())
        })
    }

    /// Rule: a closed rundown refuses new acquires (`ExAcquireRundownProtection` fails once
    /// rundown began), without waiting for the references already taken.
    #[test]
    fn a_closed_rundown_refuses_new_acquires() {
        let r = Rundown::default();
        assert!(r.acquire(), "an open rundown grants references");
        assert_eq!(r.refs(), 1);
        r.close();
        assert!(!r.acquire(), "acquire after close must fail");
        assert_eq!(r.refs(), 1, "a refused acquire takes no reference");
        r.release();
        assert_eq!(r.refs(), 0);
    }

    /// Rule: the rundown wait refuses new references at once and returns only when the
    /// last old one is released.
    #[test]
    fn rundown_refuses_new_references_once_closing_and_waits_for_old_ones() {
        let r = Arc::new(Rundown::default());
        assert!(r.acquire());
        assert!(r.acquire());
        let waiter = start_wait(&r);
        bounded::until("the rundown wait to begin", || closing(&r));
        assert!(!r.acquire(), "acquire after rundown began must fail");
        r.release();
        assert!(!waiter.is_finished(), "returned with a reference held");
        r.release();
        let (res, refs) = bounded::join("the rundown wait after the last release", waiter);
        assert_eq!(res, Ok(()));
        assert_eq!(refs, 0, "the wait returned while a reference was held");
    }

    /// The #2010 mistake: initializing a rundown an invocation holds zeroes the count; the
    /// holder's release then underflows it, and the rundown wait never completes (only a
    /// halt ends it).
    #[test]
    fn a_rundown_initialized_under_a_holder_underflows_and_never_drains() {
        let r = Arc::new(Rundown::default());
        assert!(r.acquire(), "an invocation holds the rundown");
        r.initialize_again();
        assert_eq!(r.refs(), 0);
        r.release();
        assert_eq!(r.refs(), u64::MAX, "the holder's release wraps the count");
        let waiter = start_wait(&r);
        bounded::until("the rundown wait to begin", || closing(&r));
        assert!(
            !waiter.is_finished(),
            "a wait on an underflowed count returned"
        );
        r.cancel();
        let (res, _) = bounded::join("the cancelled wait", waiter);
        assert_eq!(res, Err(Cancelled));
    }

    /// Rule: a rundown with no references outstanding completes at once.
    #[test]
    fn a_rundown_without_references_completes_at_once() {
        let r = Rundown::default();
        assert_eq!(
            bounded::within("an idle rundown", move || r.wait_for_release()),
            Ok(())
        );
    }

    #[test]
    fn cancel_ends_the_wait() {
        let r = Arc::new(Rundown::default());
        assert!(r.acquire());
        let waiter = start_wait(&r);
        bounded::until("the rundown wait to begin", || closing(&r));
        r.cancel();
        let (res, refs) = bounded::join("the cancelled rundown wait", waiter);
        assert_eq!(res, Err(Cancelled));
        assert_eq!(refs, 1, "cancel ends the wait, it does not drop references");
    }

    /// Rule: one provider registration per NPI and map type (`NmrRegisterProvider` fails
    /// with STATUS_OBJECT_NAME_COLLISION for a second one).
    #[test]
    fn a_map_type_has_at_most_one_provider() {
        let nmr = Nmr::default();
        let (a, b) = (registration(15), registration(15));
        assert!(nmr.register(a.clone()));
        assert!(
            !nmr.register(b),
            "a second provider for type 15 must be refused"
        );
        assert!(nmr.get(15).is_some_and(|r| Arc::ptr_eq(&r, &a)));
        assert!(
            nmr.register(registration(16)),
            "another type is independent"
        );
    }

    /// Rule: a client (map) binds only to a registered provider, and binding takes a
    /// rundown reference on it.
    #[test]
    fn attaching_takes_a_rundown_reference_on_the_registered_provider() {
        let nmr = Nmr::default();
        assert!(nmr.attach(15).is_none(), "no provider: no binding");
        let reg = registration(15);
        assert!(nmr.register(reg.clone()));
        let bound = nmr.attach(15).expect("binds to the registered provider");
        assert!(Arc::ptr_eq(&bound, &reg));
        assert_eq!(reg.rundown.refs(), 1);
        assert!(nmr.attach(16).is_none(), "other types stay unbound");
    }

    /// Rule: deregistration completes only after the last client detaches, and no new
    /// client binds once it began.
    #[test]
    fn deregistration_completes_only_after_the_last_client_detaches() {
        let nmr = Arc::new(Nmr::default());
        let reg = registration(15);
        assert!(nmr.register(reg.clone()));
        let maps = [nmr.attach(15).unwrap(), nmr.attach(15).unwrap()];
        nmr.begin_deregister(&reg);
        assert!(
            nmr.attach(15).is_none(),
            "a new map bound while deregistering"
        );
        let unload = {
            let (nmr, reg) = (nmr.clone(), reg.clone());
            std::thread::spawn(move || {
                let res = reg.rundown.wait_for_release();
                nmr.end_deregister(&reg);
                (res, reg.rundown.refs())
            })
        };
        bounded::until("the detach to wait for the rundown", || {
            closing(&reg.rundown)
        });
        maps[0].rundown.release();
        assert!(
            !unload.is_finished(),
            "detach finished with a map still bound"
        );
        maps[1].rundown.release();
        let (res, refs) = bounded::join("the detach after the last map went", unload);
        assert_eq!((res, refs), (Ok(()), 0));
        drop(maps);
        assert_eq!(
            Arc::strong_count(&reg),
            1,
            "a completed deregistration leaves the NMR holding the provider"
        );
    }

    /// Rule: deregistering an old registration never removes a newer provider of the type
    /// (a driver restarted while the old instance's detach is still pending).
    #[test]
    fn deregistering_an_old_registration_keeps_its_successor() {
        let nmr = Nmr::default();
        let (old, new) = (registration(15), registration(15));
        assert!(nmr.register(old.clone()));
        nmr.begin_deregister(&old);
        assert!(nmr.get(15).is_none(), "deregistration removes the provider");
        assert!(nmr.register(new.clone()), "the type is free again");
        nmr.begin_deregister(&old);
        nmr.end_deregister(&old);
        assert!(nmr.get(15).is_some_and(|r| Arc::ptr_eq(&r, &new)));
    }

    /// Rule: a halt ends every pending deregistration wait (a bugcheck must not leave the
    /// unload thread blocked), and a later wait on a still-registered provider too.
    #[test]
    fn a_halt_ends_pending_deregistrations() {
        let nmr = Nmr::default();
        let (leaving, staying) = (registration(15), registration(16));
        assert!(nmr.register(leaving.clone()) && nmr.register(staying.clone()));
        let _maps = [nmr.attach(15).unwrap(), nmr.attach(16).unwrap()];
        nmr.begin_deregister(&leaving);
        let waiter = {
            let reg = leaving.clone();
            std::thread::spawn(move || reg.rundown.wait_for_release())
        };
        bounded::until("the detach to wait", || closing(&leaving.rundown));
        nmr.cancel_all();
        assert_eq!(
            bounded::join("the detach after a halt", waiter),
            Err(Cancelled)
        );
        let reg = staying.clone();
        assert_eq!(
            bounded::within("a wait after the halt", move || reg
                .rundown
                .wait_for_release()),
            Err(Cancelled)
        );
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

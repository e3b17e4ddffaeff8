//! Bounded waits for the model's unit tests: a bug (or a mutant) that stalls a rundown
//! wait, a synchronize or a join fails its test within seconds, naming what stalled,
//! instead of hanging the whole suite until an outer timeout.
//!
//! The model's own waits stay unbounded (a driver stop may legitimately stay pending); only
//! the tests put a limit on how long they are willing to watch.

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a test waits for something that takes milliseconds when the model is right:
/// generous for a loaded machine, yet short enough that a stalled model (several tests
/// stalling at once, two test threads) still fails well inside a 30 s outer timeout.
pub(crate) const LIMIT: Duration = Duration::from_secs(5);

/// Runs `f` on its own thread and returns its result, failing the test if it does not
/// finish within [`LIMIT`] (the thread is left behind; the test binary exits anyway).
#[track_caller]
pub(crate) fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // A send fails only if the test already gave up; nothing to do then.
        let _ = tx.send(f());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not finish within {LIMIT:?}: the model stalled")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// Waits until `cond` holds, failing the test if it does not within [`LIMIT`].
#[track_caller]
pub(crate) fn until(what: &str, cond: impl FnMut() -> bool) {
    poll(what, "happen", cond);
}

/// Joins `h`, failing the test if the thread does not finish within [`LIMIT`].
#[track_caller]
pub(crate) fn join<T>(what: &str, h: std::thread::JoinHandle<T>) -> T {
    poll(what, "finish", || h.is_finished());
    match h.join() {
        Ok(v) => v,
        Err(_) => panic!("{what} panicked"),
    }
}

#[track_caller]
fn poll(what: &str, verb: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < LIMIT,
            "{what} did not {verb} within {LIMIT:?}: the model stalled"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_operation_returns_its_value() {
        assert_eq!(within("adding", || 1 + 1), 2);
        assert_eq!(join("a thread", std::thread::spawn(|| 3)), 3);
        until("a true condition", || true);
    }
}

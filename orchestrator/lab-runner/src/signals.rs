//! Where interrupt requests come from: the OS (Ctrl-C, SIGTERM) or, in tests, a channel
//! the test presses (nextest's `SignalHandlerKind::Noop` idea), so cancellation paths are
//! exercised without signalling the test process.

use tokio::sync::mpsc;

/// A source of interrupt requests. Each `recv` completes once per Ctrl-C.
#[derive(Debug)]
pub enum SignalSource {
    /// SIGINT and SIGTERM of this process.
    Os(Box<OsSignals>),
    /// Presses sent by a test.
    Channel(mpsc::UnboundedReceiver<()>),
    /// Never fires.
    None,
}

#[derive(Debug)]
pub struct OsSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl SignalSource {
    /// Installs handlers for SIGINT and SIGTERM. Must be called inside the runtime.
    pub fn os() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(SignalSource::Os(Box::new(OsSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })))
    }

    /// A source a test can press, and the button.
    pub fn channel() -> (Self, mpsc::UnboundedSender<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (SignalSource::Channel(rx), tx)
    }

    /// Waits for the next interrupt request.
    pub async fn recv(&mut self) {
        match self {
            SignalSource::Os(s) => {
                tokio::select! {
                    _ = s.int.recv() => {}
                    _ = s.term.recv() => {}
                }
            }
            SignalSource::Channel(rx) => {
                if rx.recv().await.is_none() {
                    std::future::pending::<()>().await
                }
            }
            SignalSource::None => std::future::pending::<()>().await,
        }
    }
}

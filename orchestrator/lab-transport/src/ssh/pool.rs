//! A small pool of authenticated sessions. sshd serialises the channels of one connection,
//! so parallel commands need parallel connections; idle ones are kept for reuse, pinged with
//! keepalives, and replaced when the peer went away (a reboot).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::SshConfig;
use super::connect::{Conn, connect};
use crate::error::TransportError;

/// How an operation on a connection ended badly, and what that says about the connection.
#[derive(Debug)]
pub(crate) struct OpError {
    pub(crate) err: TransportError,
    /// The connection is still good and may go back to the pool.
    pub(crate) conn_ok: bool,
    /// Nothing reached the remote side yet, so running the operation again on a new
    /// connection cannot do it twice.
    pub(crate) retry_on_fresh: bool,
}

impl OpError {
    pub(crate) fn keep(err: TransportError) -> Self {
        Self {
            err,
            conn_ok: true,
            retry_on_fresh: false,
        }
    }

    pub(crate) fn broken(err: TransportError) -> Self {
        Self {
            err,
            conn_ok: false,
            retry_on_fresh: false,
        }
    }

    pub(crate) fn broken_before_start(err: TransportError) -> Self {
        Self {
            err,
            conn_ok: false,
            retry_on_fresh: true,
        }
    }
}

pub(crate) struct Pool {
    pub(crate) config: SshConfig,
    pub(crate) target: String,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target)
            .field("idle", &self.idle.lock().len())
            .finish()
    }
}

type Op<T> = dyn Fn(&mut Conn) -> Result<T, OpError> + Send + Sync;

impl Pool {
    pub(crate) fn new(config: SshConfig, target: String) -> Self {
        let size = config.pool_size.max(1);
        Self {
            config,
            target,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size)),
        }
    }

    /// Number of idle sessions (for tests and diagnostics).
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().len()
    }

    /// Runs `op` on a pooled connection on a blocking thread. A reused connection that turns
    /// out dead before the operation started is replaced once by a fresh one.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        op: impl Fn(&mut Conn) -> Result<T, OpError> + Send + Sync + 'static,
    ) -> Result<T, TransportError> {
        let op: Arc<Op<T>> = Arc::new(op);
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| TransportError::Config {
                target: self.target.clone(),
                detail: "the session pool was closed".into(),
            })?;
        let reused = self.idle.lock().pop();
        let was_reused = reused.is_some();
        let conn = match reused {
            Some(c) => c,
            None => self.connect().await?,
        };
        match self.run_on(conn, op.clone()).await? {
            (conn, Ok(v)) => {
                self.put_back(conn);
                Ok(v)
            }
            (_dead, Err(e)) if was_reused && e.retry_on_fresh => {
                tracing::debug!(target_host = %self.target, error = %e.err,
                    "pooled ssh session is dead; reconnecting");
                let conn = self.connect().await?;
                match self.run_on(conn, op).await? {
                    (conn, Ok(v)) => {
                        self.put_back(conn);
                        Ok(v)
                    }
                    (conn, Err(e)) => {
                        if e.conn_ok {
                            self.put_back(conn);
                        }
                        Err(e.err)
                    }
                }
            }
            (conn, Err(e)) => {
                if e.conn_ok {
                    self.put_back(conn);
                }
                Err(e.err)
            }
        }
    }

    async fn run_on<T: Send + 'static>(
        &self,
        mut conn: Conn,
        op: Arc<Op<T>>,
    ) -> Result<(Conn, Result<T, OpError>), TransportError> {
        tokio::task::spawn_blocking(move || {
            let r = op(&mut conn);
            (conn, r)
        })
        .await
        .map_err(|source| TransportError::Worker {
            target: self.target.clone(),
            source,
        })
    }

    async fn connect(&self) -> Result<Conn, TransportError> {
        let config = self.config.clone();
        let target = self.target.clone();
        tokio::task::spawn_blocking(move || connect(&config, &target))
            .await
            .map_err(|source| TransportError::Worker {
                target: self.target.clone(),
                source,
            })?
    }

    fn put_back(&self, mut conn: Conn) {
        conn.last_used = Instant::now();
        let mut idle = self.idle.lock();
        if idle.len() < self.config.pool_size.max(1) {
            idle.push(conn);
        }
    }

    /// Sends a keepalive on every idle session that has been quiet for `interval`; drops
    /// those whose peer does not answer. Busy sessions are left alone.
    async fn keepalive_round(&self, interval: Duration) {
        let due: Vec<Conn> = {
            let mut idle = self.idle.lock();
            let (due, keep): (Vec<_>, Vec<_>) = idle
                .drain(..)
                .partition(|c| c.last_used.elapsed() >= interval);
            *idle = keep;
            due
        };
        if due.is_empty() {
            return;
        }
        let alive = tokio::task::spawn_blocking(move || {
            due.into_iter()
                .filter_map(|mut c| {
                    c.session.set_blocking(true);
                    c.session.set_timeout(5_000);
                    let ok = c.session.keepalive_send().is_ok();
                    c.session.set_timeout(0);
                    c.last_used = Instant::now();
                    ok.then_some(c)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut idle = self.idle.lock();
        for c in alive {
            if idle.len() < self.config.pool_size.max(1) {
                idle.push(c);
            }
        }
    }
}

/// Runs keepalive rounds until the pool is dropped.
pub(crate) async fn keepalive_loop(pool: Weak<Pool>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.keepalive_round(interval).await;
    }
}

//! The connection state behind `WinrmTransport`: a winrm-rs client (through the pinning
//! forwarder when the certificate is pinned), the one shell reused across commands, and the
//! receive loop with deadlines, output caps and cleanup on timeout or cancellation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard};
use winrm_rs::{AuthMethod, SoapError, WinrmClient, WinrmConfig, WinrmCredentials, WinrmError};

use super::pin::{PinError, PinnedForwarder, parse_fingerprint};
use super::{TlsVerify, WinrmAuth, WinrmScheme, WinrmSettings};
use crate::command::{CappedBuf, ExecOutput};
use crate::error::TransportError;

/// Stdin bytes per WS-Management Send (base64 inside a 150 KiB envelope).
const STDIN_CHUNK: usize = 48 * 1024;
/// How long cleanup requests (terminate, delete shell) may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// One command as WinRM's `Command` and `Arguments` elements, plus optional stdin.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    pub(crate) stdin: Option<Vec<u8>>,
}

struct Conn {
    client: Arc<WinrmClient>,
    /// The host name handed to winrm-rs (127.0.0.1 when going through the forwarder).
    host: String,
    forwarder: Option<PinnedForwarder>,
}

#[derive(Default)]
struct State {
    conn: Option<Conn>,
    shell_id: Option<String>,
}

impl State {
    /// The client and host of the connection; callers connect first.
    fn connected(&self) -> (Arc<WinrmClient>, String) {
        let c = self.conn.as_ref().expect("connected above");
        (c.client.clone(), c.host.clone())
    }
}

pub(crate) struct WinrmSessions {
    settings: WinrmSettings,
    target: String,
    state: Mutex<State>,
}

impl std::fmt::Debug for WinrmSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WinrmSessions")
            .field("target", &self.target)
            .finish()
    }
}

/// A command that has started remotely. If its future is dropped before it finished
/// (cancellation), the shell is forgotten and deleted in the background, which ends the
/// command's processes.
struct InFlight<'a> {
    state: MutexGuard<'a, State>,
    client: Arc<WinrmClient>,
    host: String,
    shell_id: String,
    command_id: String,
    /// The shell is the reused one (as opposed to a one-off shell for stdin).
    reused_shell: bool,
    finished: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if self.reused_shell {
            self.state.shell_id = None;
        }
        let (client, host, shell, cmd) = (
            self.client.clone(),
            self.host.clone(),
            self.shell_id.clone(),
            self.command_id.clone(),
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { abandon(&client, &host, &shell, &cmd).await });
        }
    }
}

/// Terminates a command and deletes its shell, best-effort and bounded in time.
async fn abandon(client: &WinrmClient, host: &str, shell_id: &str, command_id: &str) {
    let _ = tokio::time::timeout(
        CLEANUP_TIMEOUT,
        client.signal_terminate(host, shell_id, command_id),
    )
    .await;
    let _ = tokio::time::timeout(CLEANUP_TIMEOUT, client.delete_shell(host, shell_id)).await;
}

enum Received {
    Done(ExecOutput),
    TimedOut,
}

impl WinrmSessions {
    pub(crate) fn new(settings: WinrmSettings, target: String) -> Self {
        Self {
            settings,
            target,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    pub(crate) async fn close(&self) {
        let mut st = self.state.lock().await;
        let shell = st.shell_id.take();
        if let (Some(conn), Some(shell)) = (st.conn.as_ref(), shell) {
            let _ = tokio::time::timeout(
                CLEANUP_TIMEOUT,
                conn.client.delete_shell(&conn.host, &shell),
            )
            .await;
        }
    }

    fn map_err(
        &self,
        forwarder: Option<&PinnedForwarder>,
        op: &str,
        e: WinrmError,
    ) -> TransportError {
        if let (Some(f), WinrmError::Http(_)) = (forwarder, &e)
            && let Some(actual) = f.take_refused()
        {
            return self.pin_mismatch(actual);
        }
        if let WinrmError::AuthFailed(msg) = &e
            && msg.contains("HTTP 401")
        {
            return TransportError::AuthRejected {
                target: self.target.clone(),
                user: match &self.settings.auth {
                    WinrmAuth::Ntlm { user, .. } | WinrmAuth::Basic { user, .. } => user.clone(),
                },
                method: match self.settings.auth {
                    WinrmAuth::Ntlm { .. } => "ntlm",
                    WinrmAuth::Basic { .. } => "basic",
                },
                detail: "the server answered 401 unauthorized".into(),
            };
        }
        TransportError::Winrm {
            target: self.target.clone(),
            op: op.to_owned(),
            source: e,
        }
    }

    fn pin_mismatch(&self, actual: String) -> TransportError {
        let expected = match &self.settings.scheme {
            WinrmScheme::Https(TlsVerify::PinnedSha256(fp)) => fp.clone(),
            _ => String::new(),
        };
        TransportError::CertificateMismatch {
            target: self.target.clone(),
            expected,
            actual,
        }
    }

    fn timeout(&self, what: &str, after: Duration, transient: bool) -> TransportError {
        TransportError::Timeout {
            target: self.target.clone(),
            what: what.to_owned(),
            after,
            transient,
        }
    }

    async fn connect(&self) -> Result<Conn, TransportError> {
        let s = &self.settings;
        let (user, domain, password, method) = match &s.auth {
            WinrmAuth::Ntlm {
                user,
                domain,
                password,
            } => (user, domain.as_str(), password, AuthMethod::Ntlm),
            WinrmAuth::Basic { user, password } => (user, "", password, AuthMethod::Basic),
        };
        let password = password.resolve()?;
        let mut config = WinrmConfig {
            port: s.effective_port(),
            connect_timeout_secs: s.connect_timeout.as_secs().max(1),
            operation_timeout_secs: s.poll_timeout.as_secs().max(1),
            auth_method: method,
            // We cap output ourselves, per stream, and keep reading.
            max_output_bytes: None,
            ..WinrmConfig::default()
        };
        let mut host = s.host.clone();
        let mut forwarder = None;
        match &s.scheme {
            WinrmScheme::Http => {}
            WinrmScheme::Https(TlsVerify::PublicRoots) => config.use_tls = true,
            WinrmScheme::Https(TlsVerify::InsecureAcceptAny) => {
                config.use_tls = true;
                config.accept_invalid_certs = true;
            }
            WinrmScheme::Https(TlsVerify::PinnedSha256(fp)) => {
                let pin = parse_fingerprint(fp).ok_or_else(|| TransportError::Config {
                    target: self.target.clone(),
                    detail: "the pinned certificate fingerprint must be 64 hex digits".into(),
                })?;
                let f = PinnedForwarder::start(&s.host, s.effective_port(), pin, s.connect_timeout)
                    .await
                    .map_err(|source| TransportError::Connect {
                        target: self.target.clone(),
                        source,
                    })?;
                match f.probe(s.connect_timeout).await {
                    Ok(()) => {}
                    Err(PinError::Mismatch { actual }) => return Err(self.pin_mismatch(actual)),
                    Err(PinError::Io(source)) => {
                        return Err(TransportError::Connect {
                            target: self.target.clone(),
                            source,
                        });
                    }
                }
                // TLS is the forwarder's job; the bodies stay NTLM-sealed for NTLM, and the
                // loopback hop never leaves this machine for Basic.
                config.port = f.local_port();
                host = "127.0.0.1".into();
                forwarder = Some(f);
            }
        }
        let creds = WinrmCredentials::new(user.clone(), password.expose(), domain);
        let client = WinrmClient::new(config, creds).map_err(|e| TransportError::Winrm {
            target: self.target.clone(),
            op: "set up the http client".into(),
            source: e,
        })?;
        Ok(Conn {
            client: Arc::new(client),
            host,
            forwarder,
        })
    }

    /// Runs one invocation with a deadline, holding the session lock throughout (one
    /// command per shell at a time).
    pub(crate) async fn run(
        &self,
        inv: &Invocation,
        timeout: Duration,
        cap: usize,
    ) -> Result<ExecOutput, TransportError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().await;
        if st.conn.is_none() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let conn = tokio::time::timeout(remaining, self.connect())
                .await
                .map_err(|_| self.timeout("connect over winrm", timeout, true))??;
            st.conn = Some(conn);
        }
        let result = if inv.stdin.is_some() {
            self.run_one_off(st, inv, deadline, timeout, cap).await
        } else {
            self.run_in_shell(st, inv, deadline, timeout, cap).await
        };
        if let Err(e) = &result
            && e.is_transient()
        {
            // The host may have rebooted: start over with a new client and shell.
            let mut st = self.state.lock().await;
            st.shell_id = None;
            st.conn = None;
        }
        result
    }

    async fn run_in_shell<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        inv: &Invocation,
        deadline: Instant,
        timeout: Duration,
        cap: usize,
    ) -> Result<ExecOutput, TransportError> {
        let (client, host) = st.connected();
        let args: Vec<&str> = inv.args.iter().map(String::as_str).collect();
        let mut attempt = 0;
        let (shell_id, command_id) = loop {
            attempt += 1;
            let reused = st.shell_id.is_some();
            let shell_id = match st.shell_id.clone() {
                Some(id) => id,
                None => {
                    let id = self
                        .bounded(
                            deadline,
                            timeout,
                            client.create_shell(&host),
                            &st,
                            "create a shell",
                        )
                        .await?;
                    st.shell_id = Some(id.clone());
                    id
                }
            };
            match self
                .bounded(
                    deadline,
                    timeout,
                    client.execute_command(&host, &shell_id, &inv.program, &args),
                    &st,
                    "start a command",
                )
                .await
            {
                Ok(cmd) => break (shell_id, cmd),
                // A reused shell may have been closed by the server (idle timeout, reboot):
                // make a new one once.
                Err(TransportError::Winrm {
                    source: WinrmError::Soap(SoapError::Fault { .. }),
                    ..
                }) if reused && attempt == 1 => {
                    st.shell_id = None;
                }
                Err(e) => return Err(e),
            }
        };
        let mut flight = InFlight {
            state: st,
            client: client.clone(),
            host: host.clone(),
            shell_id,
            command_id,
            reused_shell: true,
            finished: false,
        };
        let received = self.receive(&flight, deadline, cap).await;
        flight.finished = true;
        match received {
            Ok(Received::Done(out)) => {
                // Releases the command's resources; the shell stays for the next one.
                let _ = tokio::time::timeout(
                    CLEANUP_TIMEOUT,
                    client.signal_terminate(&host, &flight.shell_id, &flight.command_id),
                )
                .await;
                Ok(out)
            }
            Ok(Received::TimedOut) => {
                flight.state.shell_id = None;
                abandon(&client, &host, &flight.shell_id, &flight.command_id).await;
                Err(self.timeout(
                    &crate::redact::scrub(&format!("run `{}`", short(&inv.program))),
                    timeout,
                    false,
                ))
            }
            Err(e) => {
                flight.state.shell_id = None;
                abandon(&client, &host, &flight.shell_id, &flight.command_id).await;
                Err(e)
            }
        }
    }

    /// Runs an invocation that needs stdin in a shell of its own (winrm-rs only sends input
    /// through a borrowed `Shell`), deleted afterwards.
    async fn run_one_off<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        inv: &Invocation,
        deadline: Instant,
        timeout: Duration,
        cap: usize,
    ) -> Result<ExecOutput, TransportError> {
        let (client, host) = st.connected();
        let args: Vec<&str> = inv.args.iter().map(String::as_str).collect();
        let shell = self
            .bounded(
                deadline,
                timeout,
                client.open_shell(&host),
                &st,
                "create a shell",
            )
            .await?;
        let command_id = match self
            .bounded(
                deadline,
                timeout,
                shell.start_command(&inv.program, &args),
                &st,
                "start a command",
            )
            .await
        {
            Ok(id) => id,
            Err(e) => {
                let _ = tokio::time::timeout(CLEANUP_TIMEOUT, shell.close()).await;
                return Err(e);
            }
        };
        let mut flight = InFlight {
            state: st,
            client: client.clone(),
            host: host.clone(),
            shell_id: shell.shell_id().to_owned(),
            command_id: command_id.clone(),
            reused_shell: false,
            finished: false,
        };
        let stdin = inv.stdin.as_deref().unwrap_or_default();
        let chunks: Vec<&[u8]> = stdin.chunks(STDIN_CHUNK).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            self.bounded(
                deadline,
                timeout,
                shell.send_input(&command_id, chunk, last),
                &flight.state,
                "send command input",
            )
            .await?;
        }
        let received = self.receive(&flight, deadline, cap).await;
        flight.finished = true;
        let _ = tokio::time::timeout(
            CLEANUP_TIMEOUT,
            client.signal_terminate(&host, &flight.shell_id, &command_id),
        )
        .await;
        let _ = tokio::time::timeout(CLEANUP_TIMEOUT, shell.close()).await;
        match received? {
            Received::Done(out) => Ok(out),
            Received::TimedOut => Err(self.timeout(
                &crate::redact::scrub(&format!("run `{}`", short(&inv.program))),
                timeout,
                false,
            )),
        }
    }

    /// Awaits a winrm-rs call, bounded by the command deadline.
    async fn bounded<T>(
        &self,
        deadline: Instant,
        timeout: Duration,
        fut: impl std::future::Future<Output = Result<T, WinrmError>>,
        st: &State,
        op: &str,
    ) -> Result<T, TransportError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let forwarder = st.conn.as_ref().and_then(|c| c.forwarder.as_ref());
        match tokio::time::timeout(remaining, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_err(forwarder, op, e)),
            Err(_) => Err(self.timeout(op, timeout, false)),
        }
    }

    /// Polls Receive until the command is done or the deadline passes. A WS-Management
    /// `TimedOut` fault only means "no output during this poll".
    async fn receive(
        &self,
        flight: &InFlight<'_>,
        deadline: Instant,
        cap: usize,
    ) -> Result<Received, TransportError> {
        let mut stdout = CappedBuf::new(cap);
        let mut stderr = CappedBuf::new(cap);
        let mut exit_code = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(Received::TimedOut);
            }
            let poll =
                flight
                    .client
                    .receive_output(&flight.host, &flight.shell_id, &flight.command_id);
            match tokio::time::timeout(remaining, poll).await {
                Err(_) => return Ok(Received::TimedOut),
                Ok(Err(WinrmError::Soap(SoapError::Fault { code, .. })))
                    if code.contains("TimedOut") => {}
                Ok(Err(e)) => {
                    let forwarder = flight
                        .state
                        .conn
                        .as_ref()
                        .and_then(|c| c.forwarder.as_ref());
                    return Err(self.map_err(forwarder, "receive command output", e));
                }
                Ok(Ok(chunk)) => {
                    stdout.push(&chunk.stdout);
                    stderr.push(&chunk.stderr);
                    exit_code = chunk.exit_code.or(exit_code);
                    if chunk.done {
                        return Ok(Received::Done(ExecOutput {
                            exit_code: exit_code.unwrap_or(-1),
                            truncated: stdout.truncated || stderr.truncated,
                            stdout: stdout.data,
                            stderr: stderr.data,
                        }));
                    }
                }
            }
        }
    }
}

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push_str(" ...");
    }
    out
}

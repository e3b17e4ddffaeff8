//! Running one command on a session channel: stdout and stderr read apart without deadlock
//! (non-blocking session + poll on the socket), output caps, and the timeout that kills the
//! remote process group. Blocking; runs on a `spawn_blocking` thread.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use ssh2::{BlockDirections, Channel};

use super::connect::Conn;
use super::pool::OpError;
use crate::command::{CappedBuf, ExecOutput, posix_quote};
use crate::error::{TransportError, ssh_is_transient};

/// Prefix of the line our POSIX wrapper writes to stderr before running the command.
const PID_MARKER: &[u8] = b"hvlab-pid:";

/// How a command is wrapped and, on timeout, killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KillMode {
    /// Wrap as `echo hvlab-pid:$$ >&2; exec "$SHELL" -c '<line>'`. sshd starts every
    /// session command in a new session (setsid), so `$$` is also the process group id:
    /// on timeout we close the channel and `kill -TERM`, then `-KILL`, the whole group from
    /// a second channel. No pty is used, so stdout and stderr stay apart.
    PosixProcessGroup,
    /// No wrapper; on timeout the channel is closed and sshd ends the session process.
    CloseChannel,
}

pub(crate) struct ExecRequest<'a> {
    pub(crate) line: &'a str,
    pub(crate) stdin: Option<&'a [u8]>,
    pub(crate) deadline: Instant,
    pub(crate) timeout: Duration,
    pub(crate) cap: usize,
    pub(crate) kill: KillMode,
}

fn session_err(target: &str, op: &str, e: ssh2::Error) -> TransportError {
    TransportError::Session {
        target: target.to_owned(),
        op: op.to_owned(),
        transient: ssh_is_transient(&e),
        source: Box::new(e),
    }
}

fn io_session_err(target: &str, op: &str, e: std::io::Error) -> TransportError {
    TransportError::Session {
        target: target.to_owned(),
        op: op.to_owned(),
        transient: crate::error::io_is_transient(&e),
        source: Box::new(e),
    }
}

/// Runs a command. The connection is left in blocking mode whatever happens.
pub(crate) fn exec(
    conn: &mut Conn,
    req: &ExecRequest<'_>,
    target: &str,
) -> Result<ExecOutput, OpError> {
    let sess = conn.session.clone();
    sess.set_blocking(true);
    // Opening the channel and starting the command must not outlive the deadline either.
    let remaining = req.deadline.saturating_duration_since(Instant::now());
    sess.set_timeout(ms(remaining.min(Duration::from_secs(60))));
    let mut channel = match sess.channel_session() {
        Ok(c) => c,
        // Nothing ran yet: the caller may retry on a fresh connection.
        Err(e) => {
            return Err(OpError::broken_before_start(session_err(
                target,
                "open an ssh channel",
                e,
            )));
        }
    };
    let line = match req.kill {
        KillMode::PosixProcessGroup => format!(
            "echo hvlab-pid:$$ >&2; exec \"${{SHELL:-/bin/sh}}\" -c {}",
            posix_quote(req.line)
        ),
        KillMode::CloseChannel => req.line.to_owned(),
    };
    if let Err(e) = channel.exec(&line) {
        let transient = ssh_is_transient(&e);
        let err = session_err(target, "start a command", e);
        return Err(if transient {
            OpError::broken_before_start(err)
        } else {
            OpError::keep(err)
        });
    }
    if let Some(input) = req.stdin {
        let written = channel.write_all(input).and_then(|()| channel.flush());
        if let Err(e) = written {
            return Err(OpError::broken(io_session_err(
                target,
                "send command input",
                e,
            )));
        }
    }
    if let Err(e) = channel.send_eof() {
        return Err(OpError::broken(session_err(
            target,
            "close command input",
            e,
        )));
    }

    sess.set_blocking(false);
    let result = read_until_exit(conn, &mut channel, req, target);
    sess.set_blocking(true);
    sess.set_timeout(0);
    match result {
        Ok(out) => Ok(out),
        Err(ReadEnd::Broken(e)) => Err(OpError::broken(e)),
        Err(ReadEnd::TimedOut { pid }) => {
            let err = TransportError::Timeout {
                target: target.to_owned(),
                what: crate::redact::scrub(&format!("run `{}`", first_line(req.line))),
                after: req.timeout,
                transient: false,
            };
            // Kill first: sshd only closes the channel once the command is gone, and a
            // channel close waits for the server's close.
            sess.set_timeout(10_000);
            let killed = match (req.kill, pid) {
                (KillMode::PosixProcessGroup, Some(pid)) => kill_group(conn, pid).is_ok(),
                _ => true,
            };
            sess.set_timeout(if pid.is_some() { 5_000 } else { 2_000 });
            let closed = channel.close().is_ok();
            drop(channel);
            sess.set_timeout(0);
            if closed && killed {
                Err(OpError::keep(err))
            } else {
                Err(OpError::broken(err))
            }
        }
    }
}

enum ReadEnd {
    Broken(TransportError),
    TimedOut { pid: Option<u32> },
}

struct Streams {
    stdout: CappedBuf,
    stderr: CappedBuf,
    /// Stderr bytes held back until the wrapper's pid line is complete.
    head: Option<Vec<u8>>,
    pid: Option<u32>,
}

impl Streams {
    fn push_stderr(&mut self, bytes: &[u8]) {
        let Some(head) = self.head.as_mut() else {
            self.stderr.push(bytes);
            return;
        };
        head.extend_from_slice(bytes);
        if let Some(nl) = head.iter().position(|&b| b == b'\n') {
            let head = self.head.take().unwrap_or_default();
            let (first, rest) = head.split_at(nl + 1);
            match first.strip_prefix(PID_MARKER) {
                Some(pid) => {
                    self.pid = std::str::from_utf8(pid)
                        .ok()
                        .and_then(|p| p.trim().parse().ok());
                    self.stderr.push(rest);
                }
                // A shell that printed something first (a login banner): keep it all.
                None => self.stderr.push(&head),
            }
        }
    }

    fn finish(mut self) -> (CappedBuf, CappedBuf) {
        if let Some(head) = self.head.take() {
            self.stderr.push(&head);
        }
        (self.stdout, self.stderr)
    }
}

fn read_until_exit(
    conn: &Conn,
    channel: &mut Channel,
    req: &ExecRequest<'_>,
    target: &str,
) -> Result<ExecOutput, ReadEnd> {
    let mut s = Streams {
        stdout: CappedBuf::new(req.cap),
        stderr: CappedBuf::new(req.cap),
        head: (req.kill == KillMode::PosixProcessGroup).then(Vec::new),
        pid: None,
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let eof_seen = channel.eof();
        let mut progressed = false;
        loop {
            match channel.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    s.stdout.push(&buf[..n]);
                    progressed = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    return Err(ReadEnd::Broken(io_session_err(
                        target,
                        "read command output",
                        e,
                    )));
                }
            }
        }
        loop {
            match channel.stderr().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    s.push_stderr(&buf[..n]);
                    progressed = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    return Err(ReadEnd::Broken(io_session_err(
                        target,
                        "read command errors",
                        e,
                    )));
                }
            }
        }
        // EOF was already set before this drain, so everything sent before it is read.
        if eof_seen {
            break;
        }
        let now = Instant::now();
        if now >= req.deadline {
            return Err(ReadEnd::TimedOut { pid: s.pid });
        }
        // EOF may have been read during this drain, with the close right behind it and
        // nothing left on the socket: check before sleeping on it.
        if !progressed && !channel.eof() {
            wait_socket(conn, req.deadline - now, target).map_err(ReadEnd::Broken)?;
        }
    }
    // The exit status arrives with (or just before) the channel close.
    loop {
        match channel.wait_close() {
            Ok(()) => break,
            Err(e) if e.code() == ssh2::ErrorCode::Session(-37) => {
                let now = Instant::now();
                if now >= req.deadline {
                    return Err(ReadEnd::TimedOut { pid: s.pid });
                }
                wait_socket(conn, req.deadline - now, target).map_err(ReadEnd::Broken)?;
            }
            Err(e) => {
                return Err(ReadEnd::Broken(session_err(
                    target,
                    "wait for the command to exit",
                    e,
                )));
            }
        }
    }
    let exit_code = exit_code(channel);
    let (stdout, stderr) = s.finish();
    Ok(ExecOutput {
        exit_code,
        truncated: stdout.truncated || stderr.truncated,
        stdout: stdout.data,
        stderr: stderr.data,
    })
}

/// The exit status, or 128 + signal number for a command killed by a signal (as a shell
/// reports it).
fn exit_code(channel: &Channel) -> i32 {
    if let Ok(sig) = channel.exit_signal()
        && let Some(name) = sig.exit_signal
    {
        let num = match name.as_str() {
            "HUP" => 1,
            "INT" => 2,
            "QUIT" => 3,
            "ILL" => 4,
            "ABRT" => 6,
            "FPE" => 8,
            "KILL" => 9,
            "USR1" => 10,
            "SEGV" => 11,
            "USR2" => 12,
            "PIPE" => 13,
            "ALRM" => 14,
            "TERM" => 15,
            _ => return -1,
        };
        return 128 + num;
    }
    channel.exit_status().unwrap_or(-1)
}

/// Waits until the socket is ready in the direction libssh2 is blocked on, at most
/// `limit` (and at most 1 s, so the deadline is re-checked).
fn wait_socket(conn: &Conn, limit: Duration, target: &str) -> Result<(), TransportError> {
    let dirs = conn.session.block_directions();
    let mut flags = PollFlags::POLLIN;
    if matches!(dirs, BlockDirections::Outbound | BlockDirections::Both) {
        flags |= PollFlags::POLLOUT;
    }
    let wait = limit.min(Duration::from_secs(1));
    let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(conn.socket.as_fd(), flags)];
    match poll(&mut fds, timeout) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(io_session_err(target, "wait on the ssh socket", e.into())),
    }
}

/// Kills a POSIX process group from a fresh channel: TERM, up to 2 s grace, then KILL.
fn kill_group(conn: &mut Conn, pid: u32) -> Result<(), ssh2::Error> {
    let script = format!(
        "kill -TERM -- -{pid} 2>/dev/null; i=0; \
         while kill -0 -- -{pid} 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; \
         kill -KILL -- -{pid} 2>/dev/null; exit 0"
    );
    let mut ch = conn.session.channel_session()?;
    ch.exec(&script)?;
    let mut sink = Vec::new();
    let _ = ch.read_to_end(&mut sink);
    ch.wait_close()?;
    Ok(())
}

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

fn first_line(line: &str) -> String {
    let first = line.lines().next().unwrap_or("");
    let mut s: String = first.chars().take(80).collect();
    if s.len() < line.len() {
        s.push_str(" ...");
    }
    s
}

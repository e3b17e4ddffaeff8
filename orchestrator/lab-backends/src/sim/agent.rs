//! Async client of the simulated guest's agent protocol (`win_vocab::protocol`).
//!
//! One TCP connection per logical operation: the agent answers requests strictly in turn on
//! a connection, and parallel steps need parallel requests, so each call (or each file
//! transfer, which is a sequence of calls) gets its own loopback connection. The port is
//! re-read from `agent.json` on every connect because it changes on every boot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use win_vocab::protocol::{self, Request, Response};

use crate::error::{BackendError, Result};

pub use win_vocab::protocol::launch::AgentInfo;

/// Reads `agent.json` of a disk directory, if the guest wrote one.
pub fn read_agent_info(disk: &Path) -> Option<AgentInfo> {
    let bytes = std::fs::read(disk.join("agent.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Default bound on a single request/response round trip.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to one guest's agent.
#[derive(Debug)]
pub struct AgentConn {
    vm: String,
    stream: TcpStream,
}

impl AgentConn {
    /// Connects to the agent of the guest whose disk is `disk`.
    pub async fn connect(vm: &str, disk: &Path) -> Result<Self> {
        let info = read_agent_info(disk).ok_or_else(|| {
            BackendError::connection(vm, "the guest agent is not up (no agent.json)")
        })?;
        let connect = TcpStream::connect(("127.0.0.1", info.port));
        let stream = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| {
                BackendError::connection(
                    vm,
                    format!("connect to 127.0.0.1:{} timed out", info.port),
                )
            })?
            .map_err(|e| BackendError::Connection {
                vm: vm.to_owned(),
                message: format!("connect to 127.0.0.1:{}", info.port),
                source: Some(e.into()),
            })?;
        stream.set_nodelay(true).ok();
        Ok(AgentConn {
            vm: vm.to_owned(),
            stream,
        })
    }

    /// Sends one request and reads its response within `timeout`.
    pub async fn call(&mut self, req: &Request, timeout: Duration) -> Result<Response> {
        let op = op_name(req);
        match tokio::time::timeout(timeout, self.round_trip(req)).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::Timeout {
                vm: self.vm.clone(),
                operation: op.to_owned(),
                timeout,
            }),
        }
    }

    async fn round_trip(&mut self, req: &Request) -> Result<Response> {
        let frame = protocol::encode_request(req).map_err(|e| BackendError::Protocol {
            vm: self.vm.clone(),
            message: e.to_string(),
        })?;
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| self.lost(e))?;
        let mut prefix = [0u8; 4];
        self.stream
            .read_exact(&mut prefix)
            .await
            .map_err(|e| self.lost(e))?;
        let len = protocol::frame_body_len(prefix).map_err(|e| BackendError::Protocol {
            vm: self.vm.clone(),
            message: e.to_string(),
        })?;
        let mut body = vec![0u8; len];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|e| self.lost(e))?;
        protocol::decode_response_body(&body).map_err(|e| BackendError::Protocol {
            vm: self.vm.clone(),
            message: e.to_string(),
        })
    }

    fn lost(&self, e: std::io::Error) -> BackendError {
        BackendError::Connection {
            vm: self.vm.clone(),
            message: "connection lost".into(),
            source: Some(e.into()),
        }
    }
}

/// Turns an agent `Error` response into a typed error; passes other responses through.
pub fn check(vm: &str, operation: &str, resp: Response) -> Result<Response> {
    match resp {
        Response::Error { code, message } => Err(BackendError::Guest {
            vm: vm.to_owned(),
            operation: operation.to_owned(),
            code,
            message,
        }),
        other => Ok(other),
    }
}

/// An unexpected response kind.
pub fn unexpected(vm: &str, operation: &str, resp: &Response) -> BackendError {
    BackendError::Protocol {
        vm: vm.to_owned(),
        message: format!("unexpected answer to {operation}: {resp:?}"),
    }
}

fn op_name(req: &Request) -> &'static str {
    match req {
        Request::Ping => "ping",
        Request::Exec { .. } => "exec",
        Request::UploadBegin { .. } | Request::UploadChunk { .. } | Request::UploadEnd { .. } => {
            "upload"
        }
        Request::Download { .. } => "download",
        Request::Stat { .. } => "stat",
        Request::List { .. } => "list",
        Request::Remove { .. } => "remove",
        Request::ServiceCreate { .. } => "service create",
        Request::ServiceStart { .. } => "service start",
        Request::ServiceStop { .. } => "service stop",
        Request::ServiceQuery { .. } => "service query",
        Request::ServiceDelete { .. } => "service delete",
        Request::SetTestSigning { .. } => "set test signing",
        Request::SetCrashControl(_) => "set crash control",
        Request::SetVerifier { .. } => "set verifier",
        Request::GetConfig => "get config",
        Request::Events { .. } => "read events",
        Request::Metric { .. } => "read metric",
        Request::Reboot => "reboot",
        Request::Shutdown => "shutdown",
    }
}

/// Path of a VM's disk directory (kept here so the guest handle and hypervisor agree).
pub fn disk_dir(vm_dir: &Path) -> PathBuf {
    vm_dir.join(super::disk::DISK_DIR)
}

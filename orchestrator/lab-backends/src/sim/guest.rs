//! `Guest` for a simulated VM: every operation is a typed agent request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use win_vocab::protocol::{self, Request, Response};

use super::agent::{AgentConn, REQUEST_TIMEOUT, check, unexpected};
use crate::error::{BackendError, Result};
use crate::guest::Guest;
use crate::model::{
    CrashControl, DirEntry, EventRecord, ExecOutput, FileInfo, ServiceSpec, ServiceState, Verifier,
};

/// Transfer chunk size: large enough that per-request overhead is negligible, small enough
/// to stay well inside the agent's frame limit once base64-encoded.
const CHUNK: u32 = 1024 * 1024;

/// A handle on one simulated VM's guest. Cheap to clone; holds no connection.
#[derive(Debug, Clone)]
pub struct SimGuest {
    vm: String,
    disk: PathBuf,
}

impl SimGuest {
    pub(crate) fn new(vm: &str, disk: PathBuf) -> Self {
        SimGuest {
            vm: vm.to_owned(),
            disk,
        }
    }

    async fn call(&self, req: Request, timeout: Duration, operation: &str) -> Result<Response> {
        let mut conn = AgentConn::connect(&self.vm, &self.disk).await?;
        let resp = conn.call(&req, timeout).await?;
        check(&self.vm, operation, resp)
    }

    async fn ok(&self, req: Request, operation: &str) -> Result<()> {
        match self.call(req, REQUEST_TIMEOUT, operation).await? {
            Response::Ok => Ok(()),
            other => Err(unexpected(&self.vm, operation, &other)),
        }
    }

    /// Asks the guest OS to power off (graceful `Stop-VM`).
    pub(crate) async fn call_shutdown(&self) -> Result<()> {
        self.ok(Request::Shutdown, "shutdown").await
    }

    async fn service(&self, req: Request, operation: &str) -> Result<ServiceState> {
        match self.call(req, REQUEST_TIMEOUT, operation).await? {
            Response::Service(st) => Ok(st.state),
            other => Err(unexpected(&self.vm, operation, &other)),
        }
    }
}

impl Guest for SimGuest {
    fn vm(&self) -> &str {
        &self.vm
    }

    async fn boot_id(&self) -> Result<String> {
        match self
            .call(Request::Ping, Duration::from_secs(5), "ping")
            .await?
        {
            Response::Pong { boot_id, .. } => Ok(boot_id),
            other => Err(unexpected(&self.vm, "ping", &other)),
        }
    }

    async fn exec(&self, argv: &[String], timeout: Duration) -> Result<ExecOutput> {
        let req = Request::Exec {
            argv: argv.to_vec(),
            timeout_ms: timeout.as_millis().min(u128::from(u64::MAX)) as u64,
        };
        // The guest enforces the timeout itself; allow it time to kill and answer.
        match self
            .call(req, timeout + Duration::from_secs(10), "exec")
            .await?
        {
            Response::Exec(out) => Ok(ExecOutput {
                exit_code: out.exit_code.unwrap_or(-1),
                stdout: out.stdout,
                stderr: out.stderr,
                timed_out: out.timed_out,
            }),
            other => Err(unexpected(&self.vm, "exec", &other)),
        }
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<FileInfo> {
        let (size, sha256) = hash_file(local).await?;
        let mut conn = AgentConn::connect(&self.vm, &self.disk).await?;
        let op = "upload";
        let begin = Request::UploadBegin {
            path: remote.to_owned(),
            size,
            sha256: sha256.clone(),
        };
        let id = match check(&self.vm, op, conn.call(&begin, REQUEST_TIMEOUT).await?)? {
            Response::UploadStarted { id } => id,
            other => return Err(unexpected(&self.vm, op, &other)),
        };
        let mut file = tokio::fs::File::open(local)
            .await
            .map_err(BackendError::io("open for upload", local))?;
        let mut offset = 0u64;
        let mut buf = vec![0u8; CHUNK as usize];
        loop {
            let n = read_full(&mut file, &mut buf)
                .await
                .map_err(BackendError::io("read for upload", local))?;
            if n == 0 {
                break;
            }
            let chunk = Request::UploadChunk {
                id,
                offset,
                data: buf[..n].to_vec(),
            };
            match check(&self.vm, op, conn.call(&chunk, REQUEST_TIMEOUT).await?)? {
                Response::ChunkAccepted { .. } => {}
                other => return Err(unexpected(&self.vm, op, &other)),
            }
            offset += n as u64;
        }
        match conn
            .call(&Request::UploadEnd { id }, REQUEST_TIMEOUT)
            .await?
        {
            Response::UploadDone { size, sha256, .. } => Ok(FileInfo { size, sha256 }),
            Response::Error { code, message } if code == protocol::codes::ERROR_CRC => {
                Err(BackendError::HashMismatch {
                    vm: self.vm.clone(),
                    path: remote.to_owned(),
                    expected: sha256,
                    actual: message,
                })
            }
            other => Err(unexpected(&self.vm, op, &check(&self.vm, op, other)?)),
        }
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<FileInfo> {
        let op = "download";
        let expected = self
            .stat(remote)
            .await?
            .ok_or_else(|| BackendError::Guest {
                vm: self.vm.clone(),
                operation: op.into(),
                code: protocol::codes::ERROR_FILE_NOT_FOUND,
                message: format!("{remote} does not exist"),
            })?;
        let mut conn = AgentConn::connect(&self.vm, &self.disk).await?;
        let tmp = local.with_extension("part");
        let fetched = async {
            let mut out = tokio::fs::File::create(&tmp)
                .await
                .map_err(BackendError::io("create download file", &tmp))?;
            let mut hasher = Sha256::new();
            let mut offset = 0u64;
            loop {
                let req = Request::Download {
                    path: remote.to_owned(),
                    offset,
                    max_len: CHUNK,
                };
                let (data, eof) =
                    match check(&self.vm, op, conn.call(&req, REQUEST_TIMEOUT).await?)? {
                        Response::Data { data, eof } => (data, eof),
                        other => return Err(unexpected(&self.vm, op, &other)),
                    };
                hasher.update(&data);
                out.write_all(&data)
                    .await
                    .map_err(BackendError::io("write download file", &tmp))?;
                offset += data.len() as u64;
                if eof || data.is_empty() {
                    break;
                }
            }
            out.flush()
                .await
                .map_err(BackendError::io("write download file", &tmp))?;
            drop(out);
            let actual = hex::encode(hasher.finalize());
            if actual != expected.sha256 || offset != expected.size {
                return Err(BackendError::HashMismatch {
                    vm: self.vm.clone(),
                    path: remote.to_owned(),
                    expected: expected.sha256.clone(),
                    actual,
                });
            }
            Ok((offset, actual))
        }
        .await;
        let (offset, actual) = match fetched {
            Ok(v) => v,
            Err(e) => {
                // A partial copy is no use and holds the space that may have run out; the
                // error returned already says what failed.
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        tokio::fs::rename(&tmp, local)
            .await
            .map_err(BackendError::io("move download into place", local))?;
        Ok(FileInfo {
            size: offset,
            sha256: actual,
        })
    }

    async fn stat(&self, remote: &str) -> Result<Option<FileInfo>> {
        let req = Request::Stat {
            path: remote.to_owned(),
        };
        let mut conn = AgentConn::connect(&self.vm, &self.disk).await?;
        match conn.call(&req, REQUEST_TIMEOUT).await? {
            Response::FileStat { size, sha256 } => Ok(Some(FileInfo { size, sha256 })),
            Response::Error { code, .. }
                if code == protocol::codes::ERROR_FILE_NOT_FOUND
                    || code == protocol::codes::ERROR_PATH_NOT_FOUND =>
            {
                Ok(None)
            }
            other => Err(unexpected(
                &self.vm,
                "stat",
                &check(&self.vm, "stat", other)?,
            )),
        }
    }

    async fn list_dir(&self, remote: &str) -> Result<Vec<DirEntry>> {
        let req = Request::List {
            dir: remote.to_owned(),
        };
        match self.call(req, REQUEST_TIMEOUT, "list").await? {
            Response::Listing { entries } => Ok(entries
                .into_iter()
                .map(|e| DirEntry {
                    name: e.name,
                    size: e.size,
                    is_dir: e.is_dir,
                })
                .collect()),
            other => Err(unexpected(&self.vm, "list", &other)),
        }
    }

    async fn remove(&self, remote: &str) -> Result<()> {
        self.ok(
            Request::Remove {
                path: remote.to_owned(),
            },
            "remove",
        )
        .await
    }

    async fn service_create(&self, spec: &ServiceSpec) -> Result<()> {
        let req = Request::ServiceCreate {
            name: spec.name.clone(),
            binary_path: spec.binary_path.clone(),
            start_type: spec.start_type,
            depends_on: spec.depends_on.clone(),
        };
        self.service(req, "service create").await.map(|_| ())
    }

    async fn service_start(&self, name: &str) -> Result<ServiceState> {
        let req = Request::ServiceStart { name: name.into() };
        self.service(req, "service start").await
    }

    async fn service_stop(&self, name: &str) -> Result<ServiceState> {
        let req = Request::ServiceStop { name: name.into() };
        self.service(req, "service stop").await
    }

    async fn service_query(&self, name: &str) -> Result<ServiceState> {
        let req = Request::ServiceQuery { name: name.into() };
        self.service(req, "service query").await
    }

    async fn service_delete(&self, name: &str) -> Result<()> {
        let req = Request::ServiceDelete { name: name.into() };
        self.ok(req, "service delete").await
    }

    async fn set_test_signing(&self, on: bool) -> Result<()> {
        self.ok(Request::SetTestSigning { on }, "set test signing")
            .await
    }

    async fn set_crash_control(&self, cc: &CrashControl) -> Result<()> {
        let req = Request::SetCrashControl(*cc);
        self.ok(req, "set crash control").await
    }

    async fn set_verifier(&self, v: &Verifier) -> Result<()> {
        let req = Request::SetVerifier {
            drivers: v.drivers.clone(),
            flags: v.flags,
        };
        self.ok(req, "set verifier").await
    }

    async fn events(&self, since_record: u64) -> Result<Vec<EventRecord>> {
        let req = Request::Events {
            log: "System".into(),
            since_record,
        };
        match self.call(req, REQUEST_TIMEOUT, "read events").await? {
            Response::Events { records } => Ok(records),
            other => Err(unexpected(&self.vm, "read events", &other)),
        }
    }

    async fn metric(&self, name: &str) -> Result<i64> {
        let req = Request::Metric { name: name.into() };
        match self.call(req, REQUEST_TIMEOUT, "read metric").await? {
            Response::Metric { value, .. } => Ok(i64::try_from(value).unwrap_or(i64::MAX)),
            other => Err(unexpected(&self.vm, "read metric", &other)),
        }
    }

    async fn reboot(&self) -> Result<()> {
        self.ok(Request::Reboot, "reboot").await
    }
}

async fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(BackendError::io("open for upload", path))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; CHUNK as usize];
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(BackendError::io("read for upload", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Fills `buf` as far as the file allows (a short read is not the end of a file).
async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

//! The guest-agent wire protocol: typed requests and responses in length-prefixed JSON frames.
//!
//! A frame is a `u32` big-endian body length followed by that many bytes of JSON (one
//! [`Request`] from the client, one [`Response`] from the guest). Bodies are at most
//! [`MAX_FRAME_LEN`] bytes. Binary data (file chunks) travels as standard base64 strings.
//!
//! A connection carries any number of request/response pairs, strictly in turn: the guest
//! answers each request before it reads the next one. Clients that want concurrency open
//! more connections (the guest serves each on its own thread).
//!
//! Errors are `Response::Error { code, message }` with a Windows error code where one
//! applies (see [`codes`]), so the Windows implementation of the same guest operations can
//! report the same numbers.
//!
//! Requests are JSON objects tagged by `"op"`, responses by `"kind"`, both snake_case:
//! `{"op":"exec","argv":["cmd","/c","exit","3"],"timeout_ms":5000}` ->
//! `{"kind":"exec","exit_code":3,"stdout":"","stderr":"","timed_out":false}`.

pub mod codes;
mod frame;
pub mod launch;

use serde::{Deserialize, Serialize};

pub use crate::{CrashControl, DumpKind, EventRecord, ServiceState, StartType, Verifier};

pub use frame::{
    FrameError, decode_request, decode_request_body, decode_response, decode_response_body,
    encode_request, encode_response, frame_body_len, read_frame, read_request, read_response,
    split_frame, write_frame, write_request, write_response,
};

/// Largest frame body either side sends or accepts (8 MiB).
pub const MAX_FRAME_LEN: u32 = 8 * 1024 * 1024;

/// Version reported by `Ping`; bumped on any incompatible change to these types.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest `UploadChunk`/`Download` payload that still fits a frame once base64-encoded
/// (4/3 growth plus JSON overhead). Clients should send chunks of at most this size.
pub const MAX_CHUNK_LEN: u32 = 4 * 1024 * 1024;

/// One request from the orchestrator to the guest agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Liveness and identity: answered with [`Response::Pong`].
    Ping,
    /// Run a program; `argv[0]` is a Windows path of a deployed tool or a builtin
    /// (`cmd /c exit N`, `cmd /c echo ...`, `hostname`). Answered with [`Response::Exec`].
    Exec { argv: Vec<String>, timeout_ms: u64 },
    /// Start an upload of `size` bytes whose SHA-256 (hex) must be `sha256`; answered with
    /// [`Response::UploadStarted`]. The file appears at `path` only after `UploadEnd`.
    UploadBegin {
        path: String,
        size: u64,
        sha256: String,
    },
    /// A chunk of an upload; chunks must arrive in order (`offset` = bytes received so
    /// far). Answered with [`Response::ChunkAccepted`].
    UploadChunk {
        id: u64,
        offset: u64,
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    /// Finish an upload: the size and hash are verified, then the file is renamed into
    /// place. Answered with [`Response::UploadDone`] or error 23 (hash mismatch) / 24 (size).
    UploadEnd { id: u64 },
    /// Read up to `max_len` bytes (capped at [`MAX_CHUNK_LEN`]) at `offset`; answered with
    /// [`Response::Data`].
    Download {
        path: String,
        offset: u64,
        max_len: u32,
    },
    /// Size and SHA-256 of a file; answered with [`Response::FileStat`].
    Stat { path: String },
    /// Entries of a directory; answered with [`Response::Listing`].
    List { dir: String },
    /// Delete a file or an empty directory; answered with [`Response::Ok`].
    Remove { path: String },
    /// `sc create <name> type= kernel start= <start_type> binpath= <binary_path>
    /// depend= <depends_on>`; answered with [`Response::Service`].
    ServiceCreate {
        name: String,
        binary_path: String,
        start_type: StartType,
        #[serde(default)]
        depends_on: Vec<String>,
    },
    /// Load the driver (DriverEntry); answered with [`Response::Service`] (running).
    ServiceStart { name: String },
    /// Ask the driver to unload; answered at once with [`Response::Service`] whose state
    /// is `stopped` or `stop_pending` (unload waits for the provider's rundown).
    ServiceStop { name: String },
    /// Current state of a service; answered with [`Response::Service`].
    ServiceQuery { name: String },
    /// Delete a service (marked for delete while running); answered with [`Response::Ok`].
    ServiceDelete { name: String },
    /// `bcdedit /set testsigning on|off`: takes effect at the next boot.
    SetTestSigning { on: bool },
    /// Write the CrashControl registry values (read by the crash path at once, as on
    /// Windows where they are read when the bugcheck happens).
    SetCrashControl(CrashControl),
    /// `verifier /standard /driver ...` (`drivers` empty = reset): takes effect at the next
    /// boot.
    SetVerifier { drivers: Vec<String>, flags: u32 },
    /// Current configuration (effective and pending); answered with [`Response::Config`].
    GetConfig,
    /// Event log records with `record_id > since_record`; answered with [`Response::Events`].
    Events { log: String, since_record: u64 },
    /// A kernel metric (`pool_bytes:<TAG>`, `pool_allocs:<TAG>`, `epoch_pending_bytes`,
    /// `epoch_current`, `epoch_released`); answered with [`Response::Metric`].
    Metric { name: String },
    /// Restart the guest: answered with [`Response::Ok`], then the guest exits with
    /// [`launch::EXIT_REBOOT`].
    Reboot,
    /// Power the guest off: answered with [`Response::Ok`], then the guest exits with
    /// [`launch::EXIT_POWER_OFF`].
    Shutdown,
}

/// One response from the guest agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Pong {
        /// New on every boot: a change means the guest rebooted (crash or request).
        boot_id: String,
        uptime_ms: u64,
        protocol: u32,
    },
    Exec(ExecOutput),
    UploadStarted {
        id: u64,
    },
    ChunkAccepted {
        id: u64,
        /// Bytes received so far.
        received: u64,
    },
    UploadDone {
        path: String,
        size: u64,
        sha256: String,
    },
    Data {
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
        /// True when `offset + data.len()` is the end of the file.
        eof: bool,
    },
    FileStat {
        size: u64,
        sha256: String,
    },
    Listing {
        entries: Vec<DirEntry>,
    },
    Service(ServiceStatus),
    Config(GuestConfig),
    Events {
        records: Vec<EventRecord>,
    },
    Metric {
        name: String,
        value: u64,
    },
    /// Success without data (remove, service delete, settings, reboot, shutdown).
    Ok,
    Error {
        /// Windows error code where one applies (see [`codes`]).
        code: u32,
        message: String,
    },
}

impl Response {
    /// An error response.
    pub fn error(code: u32, message: impl Into<String>) -> Self {
        Response::Error {
            code,
            message: message.into(),
        }
    }
}

/// Result of an `Exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecOutput {
    /// The process exit code; `None` when it was stopped by the timeout.
    pub exit_code: Option<i32>,
    /// Output as text (invalid UTF-8 replaced).
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

/// One directory entry of a `List`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
    /// Bytes for files, 0 for directories.
    pub size: u64,
}

/// What `ServiceQuery` (and create/start/stop) report about one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceStatus {
    pub name: String,
    pub state: ServiceState,
    pub start_type: StartType,
    /// Windows path of the driver file.
    pub binary_path: String,
    pub depends_on: Vec<String>,
    /// Win32 exit code of the last start attempt (0 = none).
    pub win32_exit_code: u32,
    /// Marked for deletion; removed once stopped.
    pub delete_pending: bool,
}

/// What `GetConfig` reports: values in force for this boot and those pending a reboot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestConfig {
    pub computer_name: String,
    pub boot_id: String,
    pub cpus: u32,
    pub memory_mb: u64,
    /// Test signing in force this boot.
    pub test_signing: bool,
    /// Test signing in the boot configuration (applies at the next boot).
    pub test_signing_pending: bool,
    pub crash_control: CrashControl,
    /// Verifier settings in force this boot.
    pub verifier: Verifier,
    /// Verifier settings in the registry (apply at the next boot).
    pub verifier_pending: Verifier,
}

/// Serde adapter for `Vec<u8>` as a standard base64 string.
pub mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

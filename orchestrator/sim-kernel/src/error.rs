//! Typed errors: `EbpfError` for eBPF API results (map calls, provider callbacks) and
//! `KernelError` for kernel-level requests (services, tools), each with its Windows code.

use thiserror::Error;

/// The result of an eBPF runtime call that did not succeed, named after `ebpf_result_t`.
///
/// Messages are lowercase fragments that read after "failed to ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EbpfError {
    /// `EBPF_KEY_NOT_FOUND`: no entry with that key.
    #[error("find the key (EBPF_KEY_NOT_FOUND)")]
    KeyNotFound,
    /// `EBPF_KEY_ALREADY_EXISTS`: `BPF_NOEXIST` update of an existing key.
    #[error("insert the key: it already exists (EBPF_KEY_ALREADY_EXISTS)")]
    KeyAlreadyExists,
    /// `EBPF_OUT_OF_SPACE`: the map holds `max_entries` entries.
    #[error("insert the key: the map is full (EBPF_OUT_OF_SPACE)")]
    OutOfSpace,
    /// `EBPF_NO_MEMORY`: pool allocation failed.
    #[error("allocate pool memory (EBPF_NO_MEMORY)")]
    NoMemory,
    /// `EBPF_INVALID_FD` (4): e.g. a map-in-map created without an inner map handle, or a
    /// program whose type differs from the object map's program type.
    #[error("use the handle (EBPF_INVALID_FD)")]
    InvalidFd,
    /// `EBPF_INVALID_OBJECT` (5): a handle that names no object of the expected type, or a
    /// map that does not match a map-in-map's inner template.
    #[error("use the object: wrong or unknown object (EBPF_INVALID_OBJECT)")]
    InvalidObject,
    /// `EBPF_INVALID_ARGUMENT`.
    #[error("validate the arguments (EBPF_INVALID_ARGUMENT)")]
    InvalidArgument,
    /// `EBPF_OPERATION_NOT_SUPPORTED`: e.g. a program updating an object map.
    #[error("run the operation: not supported on this map (EBPF_OPERATION_NOT_SUPPORTED)")]
    OperationNotSupported,
    /// `EBPF_EXTENSION_FAILED_TO_LOAD`: no provider for a custom map type, or it is unloading.
    #[error("attach to the map type's provider (EBPF_EXTENSION_FAILED_TO_LOAD)")]
    ExtensionFailedToLoad,
    /// `EBPF_OBJECT_NOT_FOUND`: no pinned map of that name.
    #[error("find the object (EBPF_OBJECT_NOT_FOUND)")]
    ObjectNotFound,
    /// `EBPF_OBJECT_ALREADY_EXISTS`: a pin of that name exists.
    #[error("pin the object: the path is in use (EBPF_OBJECT_ALREADY_EXISTS)")]
    ObjectAlreadyExists,
    /// The eBPF device is absent: `ebpfcore` is not running.
    #[error("open the eBPF device: ebpfcore is not running")]
    CoreNotRunning,
    /// The kernel has stopped (bugcheck or shutdown); nothing runs any more.
    #[error("run in the kernel: it has stopped{}", halt_suffix(*.0))]
    Halted(Option<u32>),
}

fn halt_suffix(code: Option<u32>) -> String {
    match code {
        Some(c) => format!(" with bugcheck {c:#x}"),
        None => " (shut down)".to_string(),
    }
}

impl EbpfError {
    /// The `ebpf_result_t` name, as tools print it.
    pub fn result_name(&self) -> &'static str {
        match self {
            EbpfError::KeyNotFound => "EBPF_KEY_NOT_FOUND",
            EbpfError::KeyAlreadyExists => "EBPF_KEY_ALREADY_EXISTS",
            EbpfError::OutOfSpace => "EBPF_OUT_OF_SPACE",
            EbpfError::NoMemory => "EBPF_NO_MEMORY",
            EbpfError::InvalidFd => "EBPF_INVALID_FD",
            EbpfError::InvalidObject => "EBPF_INVALID_OBJECT",
            EbpfError::InvalidArgument => "EBPF_INVALID_ARGUMENT",
            EbpfError::OperationNotSupported => "EBPF_OPERATION_NOT_SUPPORTED",
            EbpfError::ExtensionFailedToLoad => "EBPF_EXTENSION_FAILED_TO_LOAD",
            EbpfError::ObjectNotFound => "EBPF_OBJECT_NOT_FOUND",
            EbpfError::ObjectAlreadyExists => "EBPF_OBJECT_ALREADY_EXISTS",
            EbpfError::CoreNotRunning => "ERROR_FILE_NOT_FOUND",
            EbpfError::Halted(_) => "HALTED",
        }
    }
}

/// Windows error 577, with the text `sc start` prints for it.
pub const ERROR_INVALID_IMAGE_HASH: u32 = 577;
/// Windows error 1051.
pub const ERROR_DEPENDENT_SERVICES_RUNNING: u32 = 1051;
/// Windows error 1056.
pub const ERROR_SERVICE_ALREADY_RUNNING: u32 = 1056;
/// Windows error 1062.
pub const ERROR_SERVICE_NOT_ACTIVE: u32 = 1062;
/// Windows error 183, what a failing `DriverEntry` with `STATUS_OBJECT_NAME_COLLISION` maps to.
pub const ERROR_ALREADY_EXISTS: u32 = 183;

/// Why a kernel-level request (service control, tool launch) failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KernelError {
    /// The image's signature does not allow loading (test-signed without test signing, or
    /// unsigned): Windows error 577.
    #[error(
        "load driver {service}: Windows cannot verify the digital signature for this file \
         ({signature}-signed image, test signing {ts}) (error 577 ERROR_INVALID_IMAGE_HASH)",
        ts = if *test_signing { "on" } else { "off" }
    )]
    InvalidImageHash {
        /// The service whose image was refused.
        service: String,
        /// `test` or `unsigned`.
        signature: String,
        /// Whether test signing was on.
        test_signing: bool,
    },
    /// The service is already running (or still stopping): error 1056.
    #[error("start service {0}: an instance of the service is already running (error 1056)")]
    AlreadyRunning(String),
    /// The service is not running: error 1062.
    #[error("stop service {0}: the service has not been started (error 1062)")]
    NotActive(String),
    /// Other running drivers depend on it: error 1051.
    #[error("stop service {service}: dependent services are running ({dependents}) (error 1051)")]
    DependentServicesRunning {
        /// The service asked to stop.
        service: String,
        /// Running services that depend on it, comma separated.
        dependents: String,
    },
    /// `DriverEntry` returned a failure status.
    #[error("start service {service}: DriverEntry failed with status {status:#010x}: {reason}")]
    DriverEntryFailed {
        /// The service.
        service: String,
        /// The NTSTATUS returned.
        status: u32,
        /// What went wrong.
        reason: String,
    },
    /// No such tool in the sim kernel.
    #[error("run tool {0}: no such tool (known: map_stress, map_tool, ebpf_stats)")]
    UnknownTool(String),
    /// Bad kernel configuration.
    #[error("boot the kernel: {0}")]
    InvalidConfig(String),
    /// The kernel has stopped: a bugcheck (code) or a shutdown (None).
    #[error("reach the kernel: it has stopped{}", halt_suffix(*.0))]
    Halted(Option<u32>),
}

impl KernelError {
    /// The Win32 error code `sc.exe` would report, where one applies.
    pub fn win32_code(&self) -> Option<u32> {
        match self {
            KernelError::InvalidImageHash { .. } => Some(ERROR_INVALID_IMAGE_HASH),
            KernelError::AlreadyRunning(_) => Some(ERROR_SERVICE_ALREADY_RUNNING),
            KernelError::NotActive(_) => Some(ERROR_SERVICE_NOT_ACTIVE),
            KernelError::DependentServicesRunning { .. } => Some(ERROR_DEPENDENT_SERVICES_RUNNING),
            KernelError::DriverEntryFailed { .. } => Some(ERROR_ALREADY_EXISTS),
            KernelError::UnknownTool(_)
            | KernelError::InvalidConfig(_)
            | KernelError::Halted(_) => None,
        }
    }
}

//! Windows error codes the guest agent reports in `Response::Error`, named as in winerror.h.
//!
//! The simulated guest and the Windows implementation of the guest operations report the
//! same numbers, so callers can match on them without knowing which lab they talk to.

/// The system cannot find the file specified (also: missing tool binary or driver file).
pub const ERROR_FILE_NOT_FOUND: u32 = 2;
/// The system cannot find the path specified.
pub const ERROR_PATH_NOT_FOUND: u32 = 3;
/// Access is denied (e.g. removing a file a running driver was loaded from).
pub const ERROR_ACCESS_DENIED: u32 = 5;
/// The handle is invalid (unknown upload id).
pub const ERROR_INVALID_HANDLE: u32 = 6;
/// The data is invalid (a malformed request frame).
pub const ERROR_INVALID_DATA: u32 = 13;
/// The system cannot find the drive specified (any drive but `C:`).
pub const ERROR_INVALID_DRIVE: u32 = 15;
/// Data error (cyclic redundancy check): an upload whose SHA-256 does not match.
pub const ERROR_CRC: u32 = 23;
/// The process cannot access the file because it is being used by another process (a
/// loaded driver's image).
pub const ERROR_SHARING_VIOLATION: u32 = 32;
/// The program issued a command but the command length is incorrect: upload size mismatch
/// or a chunk at the wrong offset.
pub const ERROR_BAD_LENGTH: u32 = 24;
/// The request is not supported (e.g. an unknown event log channel).
pub const ERROR_NOT_SUPPORTED: u32 = 50;
/// The parameter is incorrect.
pub const ERROR_INVALID_PARAMETER: u32 = 87;
/// The file name is too long / frame too large to accept.
pub const ERROR_BUFFER_OVERFLOW: u32 = 111;
/// The filename, directory name, or volume label syntax is incorrect.
pub const ERROR_INVALID_NAME: u32 = 123;
/// The directory is not empty.
pub const ERROR_DIR_NOT_EMPTY: u32 = 145;
/// The specified path is invalid (relative, UNC, `..`, device name, host path).
pub const ERROR_BAD_PATHNAME: u32 = 161;
/// The file size exceeds the limit allowed and cannot be saved.
pub const ERROR_FILE_TOO_LARGE: u32 = 223;
/// The directory name is invalid (listing a file).
pub const ERROR_DIRECTORY: u32 = 267;
/// Too many uploads are open at once.
pub const ERROR_TOO_MANY_OPEN_FILES: u32 = 4;
/// Cannot create a file when that file already exists.
pub const ERROR_ALREADY_EXISTS: u32 = 183;
/// Windows cannot verify the digital signature for this file (test-signed driver without
/// test signing, or an unsigned driver).
pub const ERROR_INVALID_IMAGE_HASH: u32 = 577;
/// The driver's image is not a valid driver file.
pub const ERROR_BAD_EXE_FORMAT: u32 = 193;
/// A stop control has been sent to a service that other running services are dependent on.
pub const ERROR_DEPENDENT_SERVICES_RUNNING: u32 = 1051;
/// The requested control is not valid for this service.
pub const ERROR_INVALID_SERVICE_CONTROL: u32 = 1052;
/// The service did not respond to the start or control request in a timely fashion.
pub const ERROR_SERVICE_REQUEST_TIMEOUT: u32 = 1053;
/// An instance of the service is already running.
pub const ERROR_SERVICE_ALREADY_RUNNING: u32 = 1056;
/// The service cannot be started because it is disabled.
pub const ERROR_SERVICE_DISABLED: u32 = 1058;
/// The specified service does not exist as an installed service.
pub const ERROR_SERVICE_DOES_NOT_EXIST: u32 = 1060;
/// The service cannot accept control messages at this time (stop while stop is pending).
pub const ERROR_SERVICE_CANNOT_ACCEPT_CTRL: u32 = 1061;
/// The service has not been started.
pub const ERROR_SERVICE_NOT_ACTIVE: u32 = 1062;
/// The dependency service or group failed to start.
pub const ERROR_SERVICE_DEPENDENCY_FAIL: u32 = 1068;
/// Circular service dependency was specified.
pub const ERROR_CIRCULAR_DEPENDENCY: u32 = 1059;
/// The specified service has been marked for deletion.
pub const ERROR_SERVICE_MARKED_FOR_DELETE: u32 = 1072;
/// The specified service already exists.
pub const ERROR_SERVICE_EXISTS: u32 = 1073;
/// The dependency service does not exist or has been marked for deletion.
pub const ERROR_SERVICE_DEPENDENCY_DELETED: u32 = 1075;
/// A system shutdown is in progress (requests after a bugcheck or during reboot).
pub const ERROR_SHUTDOWN_IN_PROGRESS: u32 = 1115;
/// Element not found (unknown metric).
pub const ERROR_NOT_FOUND: u32 = 1168;
/// An internal error in the guest (an I/O failure on its disk): should not happen.
pub const ERROR_INTERNAL_ERROR: u32 = 1359;
/// The specified channel could not be found (event logs other than `System`).
pub const ERROR_EVT_CHANNEL_NOT_FOUND: u32 = 15007;

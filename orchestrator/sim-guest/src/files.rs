//! File transfer and file operations of the agent: chunked, hash-checked uploads; ranged
//! downloads; stat (size + SHA-256), list, remove.
//!
//! An upload is staged in `<disk>/staging/` and renamed into place only after its size and
//! SHA-256 match what `UploadBegin` announced, so a failed or abandoned upload never leaves
//! a partial file at the target. Upload ids are guest-wide (any connection may send the
//! chunks); at most [`MAX_OPEN_UPLOADS`] are open, and ones idle for
//! [`UPLOAD_IDLE_TIMEOUT`] are discarded. Parent directories of a target are created, like
//! `Copy-VMFile -CreateFullPath`.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::error::{GuestError, GuestResult};
use crate::protocol::{DirEntry, MAX_CHUNK_LEN, codes};
use crate::winpath::WinPath;

/// Uploads open at once.
pub const MAX_OPEN_UPLOADS: usize = 64;
/// An upload without a chunk for this long is discarded.
pub const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest file accepted by an upload.
pub const MAX_UPLOAD_SIZE: u64 = 4 << 30;

struct Upload {
    target: PathBuf,
    win_path: String,
    size: u64,
    sha256: String,
    staged: tempfile::NamedTempFile,
    hasher: Sha256,
    received: u64,
    last_used: Instant,
}

/// The upload table and file operations rooted at a disk directory.
pub struct Files {
    disk: PathBuf,
    staging: PathBuf,
    uploads: Mutex<HashMap<u64, Upload>>,
    next_id: Mutex<u64>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("disk", &self.disk)
            .field("open_uploads", &self.uploads.lock().len())
            .finish()
    }
}

/// A resolved path: the Windows form (for messages) and the host file.
#[derive(Debug)]
pub struct Resolved {
    pub win: String,
    pub host: PathBuf,
}

impl Files {
    pub fn new(disk: PathBuf, staging: PathBuf) -> Self {
        Files {
            disk,
            staging,
            uploads: Mutex::new(HashMap::new()),
            next_id: Mutex::new(1),
        }
    }

    /// Validates a Windows path and maps it into the disk.
    pub fn resolve(&self, path: &str) -> GuestResult<Resolved> {
        let win = WinPath::parse(path)?;
        Ok(Resolved {
            host: win.to_host(&self.disk),
            win: win.to_string(),
        })
    }

    /// `UploadBegin`: returns the upload id.
    pub fn begin_upload(&self, path: &str, size: u64, sha256: &str) -> GuestResult<u64> {
        let target = self.resolve(path)?;
        if WinPath::parse(path)?.is_root() || target.host.is_dir() {
            return Err(GuestError::new(
                codes::ERROR_ACCESS_DENIED,
                format!("upload to {}: it is a directory", target.win),
            ));
        }
        let sha256 = sha256.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(GuestError::new(
                codes::ERROR_INVALID_PARAMETER,
                format!("upload to {}: sha256 must be 64 hex digits", target.win),
            ));
        }
        if size > MAX_UPLOAD_SIZE {
            return Err(GuestError::new(
                codes::ERROR_FILE_TOO_LARGE,
                format!(
                    "upload to {}: {size} bytes exceed the limit of {MAX_UPLOAD_SIZE}",
                    target.win
                ),
            ));
        }
        let mut uploads = self.uploads.lock();
        uploads.retain(|_, u| u.last_used.elapsed() < UPLOAD_IDLE_TIMEOUT);
        if uploads.len() >= MAX_OPEN_UPLOADS {
            return Err(GuestError::new(
                codes::ERROR_TOO_MANY_OPEN_FILES,
                format!(
                    "upload to {}: {MAX_OPEN_UPLOADS} uploads are already open",
                    target.win
                ),
            ));
        }
        let staged = fs::create_dir_all(&self.staging)
            .and_then(|()| tempfile::NamedTempFile::new_in(&self.staging))
            .map_err(|e| GuestError::io("stage upload to", &target.win, &self.staging, &e))?;
        let id = {
            let mut next = self.next_id.lock();
            let id = *next;
            *next += 1;
            id
        };
        uploads.insert(
            id,
            Upload {
                target: target.host,
                win_path: target.win,
                size,
                sha256,
                staged,
                hasher: Sha256::new(),
                received: 0,
                last_used: Instant::now(),
            },
        );
        Ok(id)
    }

    /// `UploadChunk`: appends `data` at `offset` (which must equal the bytes received so
    /// far); returns the bytes received.
    pub fn upload_chunk(&self, id: u64, offset: u64, data: &[u8]) -> GuestResult<u64> {
        let mut uploads = self.uploads.lock();
        let upload = uploads.get_mut(&id).ok_or_else(|| unknown_upload(id))?;
        if offset != upload.received {
            return Err(GuestError::new(
                codes::ERROR_BAD_LENGTH,
                format!(
                    "upload to {}: chunk at offset {offset}, expected offset {}",
                    upload.win_path, upload.received
                ),
            ));
        }
        let end = upload.received + data.len() as u64;
        if end > upload.size {
            let msg = format!(
                "upload to {}: {end} bytes sent, more than the announced {}",
                upload.win_path, upload.size
            );
            uploads.remove(&id);
            return Err(GuestError::new(codes::ERROR_BAD_LENGTH, msg));
        }
        if let Err(e) = upload.staged.write_all(data) {
            let err = GuestError::io("write upload to", &upload.win_path, &self.staging, &e);
            uploads.remove(&id);
            return Err(err);
        }
        upload.hasher.update(data);
        upload.received = end;
        upload.last_used = Instant::now();
        Ok(end)
    }

    /// `UploadEnd`: verifies size and hash, then renames the file into place. The upload is
    /// closed whatever the outcome. Returns (Windows path, size, sha256).
    pub fn end_upload(&self, id: u64) -> GuestResult<(String, u64, String)> {
        let upload = self
            .uploads
            .lock()
            .remove(&id)
            .ok_or_else(|| unknown_upload(id))?;
        if upload.received != upload.size {
            return Err(GuestError::new(
                codes::ERROR_BAD_LENGTH,
                format!(
                    "upload to {}: received {} bytes, announced {}",
                    upload.win_path, upload.received, upload.size
                ),
            ));
        }
        let actual = hex::encode(upload.hasher.finalize());
        if actual != upload.sha256 {
            return Err(GuestError::new(
                codes::ERROR_CRC,
                format!(
                    "upload to {}: sha256 mismatch: announced {}, received data hashes to {actual}",
                    upload.win_path, upload.sha256
                ),
            ));
        }
        let io_err = |e: &std::io::Error| {
            GuestError::io("store upload to", &upload.win_path, &upload.target, e)
        };
        if let Some(parent) = upload.target.parent() {
            fs::create_dir_all(parent).map_err(|e| io_err(&e))?;
        }
        upload
            .staged
            .persist(&upload.target)
            .map_err(|e| io_err(&e.error))?;
        Ok((upload.win_path, upload.size, actual))
    }

    /// `Download`: up to `max_len` bytes at `offset`, and whether that reaches the end.
    pub fn download(&self, path: &str, offset: u64, max_len: u32) -> GuestResult<(Vec<u8>, bool)> {
        let r = self.resolve(path)?;
        let mut file = open_file(&r, "read")?;
        let len = file
            .metadata()
            .map_err(|e| GuestError::io("read", &r.win, &r.host, &e))?
            .len();
        let want = u64::from(max_len.min(MAX_CHUNK_LEN)).min(len.saturating_sub(offset));
        let mut data = vec![0u8; want as usize];
        file.seek(SeekFrom::Start(offset.min(len)))
            .and_then(|_| file.read_exact(&mut data))
            .map_err(|e| GuestError::io("read", &r.win, &r.host, &e))?;
        Ok((data, offset.saturating_add(want) >= len))
    }

    /// `Stat`: size and SHA-256 of a file.
    pub fn stat(&self, path: &str) -> GuestResult<(u64, String)> {
        let r = self.resolve(path)?;
        let mut file = open_file(&r, "stat")?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(GuestError::io("hash", &r.win, &r.host, &e)),
            };
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok((size, hex::encode(hasher.finalize())))
    }

    /// `List`: entries of a directory, sorted by name.
    pub fn list(&self, dir: &str) -> GuestResult<Vec<DirEntry>> {
        let r = self.resolve(dir)?;
        if r.host.is_file() {
            return Err(GuestError::new(
                codes::ERROR_DIRECTORY,
                format!("list {}: it is a file", r.win),
            ));
        }
        let rd = fs::read_dir(&r.host).map_err(|e| {
            let mut err = GuestError::io("list", &r.win, &r.host, &e);
            if err.code == codes::ERROR_FILE_NOT_FOUND {
                err.code = codes::ERROR_PATH_NOT_FOUND;
            }
            err
        })?;
        let mut entries = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| GuestError::io("list", &r.win, &r.host, &e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let meta = entry
                .metadata()
                .map_err(|e| GuestError::io("list", &r.win, &r.host, &e))?;
            entries.push(DirEntry {
                name,
                is_dir: meta.is_dir(),
                size: if meta.is_dir() { 0 } else { meta.len() },
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// `Remove`: a file or an empty directory.
    pub fn remove(&self, path: &str) -> GuestResult<()> {
        let win = WinPath::parse(path)?;
        if win.is_root() {
            return Err(GuestError::new(
                codes::ERROR_ACCESS_DENIED,
                "remove C:\\: it is the drive root",
            ));
        }
        let r = self.resolve(path)?;
        let result = if r.host.is_dir() {
            fs::remove_dir(&r.host)
        } else {
            fs::remove_file(&r.host)
        };
        result.map_err(|e| GuestError::io("remove", &r.win, &r.host, &e))
    }

    /// The host path of `path` if it is valid (used by other modules for messages).
    pub fn host_path(&self, path: &str) -> GuestResult<PathBuf> {
        Ok(self.resolve(path)?.host)
    }

    /// The disk directory.
    pub fn disk(&self) -> &Path {
        &self.disk
    }
}

fn open_file(r: &Resolved, what: &str) -> GuestResult<fs::File> {
    if r.host.is_dir() {
        return Err(GuestError::new(
            codes::ERROR_ACCESS_DENIED,
            format!("{what} {}: it is a directory", r.win),
        ));
    }
    fs::File::open(&r.host).map_err(|e| GuestError::io(what, &r.win, &r.host, &e))
}

fn unknown_upload(id: u64) -> GuestError {
    GuestError::new(
        codes::ERROR_INVALID_HANDLE,
        format!("continue upload {id}: no such upload is open (it ended, failed or expired)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> (tempfile::TempDir, Files) {
        let dir = tempfile::tempdir().unwrap();
        let f = Files::new(dir.path().to_owned(), dir.path().join("staging"));
        (dir, f)
    }

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[test]
    fn upload_in_chunks_then_download_and_stat() {
        let (dir, f) = files();
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let id = f
            .begin_upload(r"C:\ebpf\x.sys", 10_000, &sha(&data))
            .unwrap();
        assert_eq!(f.upload_chunk(id, 0, &data[..4000]).unwrap(), 4000);
        assert!(
            !dir.path().join("C/ebpf/x.sys").exists(),
            "visible before the end"
        );
        f.upload_chunk(id, 4000, &data[4000..]).unwrap();
        let (win, size, hash) = f.end_upload(id).unwrap();
        assert_eq!((win.as_str(), size), (r"C:\ebpf\x.sys", 10_000));
        assert_eq!(fs::read(dir.path().join("C/ebpf/x.sys")).unwrap(), data);
        assert_eq!(f.stat(r"c:\EBPF\x.sys").unwrap(), (10_000, hash));
        let (chunk, eof) = f.download(r"C:\ebpf\x.sys", 9_000, 600).unwrap();
        assert_eq!((chunk.as_slice(), eof), (&data[9_000..9_600], false));
        let (chunk, eof) = f.download(r"C:\ebpf\x.sys", 9_600, 600).unwrap();
        assert_eq!((chunk.len(), eof), (400, true));
        let (chunk, eof) = f.download(r"C:\ebpf\x.sys", 20_000, 600).unwrap();
        assert_eq!((chunk.len(), eof), (0, true));
        let entries = f.list(r"C:\ebpf").unwrap();
        assert_eq!(entries[0].name, "x.sys");
        f.remove(r"C:\ebpf\x.sys").unwrap();
        assert_eq!(
            f.stat(r"C:\ebpf\x.sys").unwrap_err().code,
            codes::ERROR_FILE_NOT_FOUND
        );
    }

    #[test]
    fn mismatching_hash_or_size_is_refused_and_leaves_no_file() {
        let (dir, f) = files();
        let id = f.begin_upload(r"C:\a.bin", 3, &sha(b"abc")).unwrap();
        f.upload_chunk(id, 0, b"abd").unwrap();
        let err = f.end_upload(id).unwrap_err();
        assert_eq!(err.code, codes::ERROR_CRC);
        assert!(err.message.contains("sha256 mismatch"), "{err}");
        assert!(!dir.path().join("C/a.bin").exists());
        assert_eq!(
            f.end_upload(id).unwrap_err().code,
            codes::ERROR_INVALID_HANDLE
        );

        let id = f.begin_upload(r"C:\a.bin", 3, &sha(b"abc")).unwrap();
        assert_eq!(
            f.upload_chunk(id, 1, b"a").unwrap_err().code,
            codes::ERROR_BAD_LENGTH
        );
        f.upload_chunk(id, 0, b"ab").unwrap();
        assert_eq!(f.end_upload(id).unwrap_err().code, codes::ERROR_BAD_LENGTH);
        let id = f.begin_upload(r"C:\a.bin", 3, &sha(b"abc")).unwrap();
        assert_eq!(
            f.upload_chunk(id, 0, b"abcd").unwrap_err().code,
            codes::ERROR_BAD_LENGTH
        );
        assert_eq!(
            f.begin_upload(r"C:\a.bin", 3, "zz").unwrap_err().code,
            codes::ERROR_INVALID_PARAMETER
        );
    }

    #[test]
    fn errors_use_windows_codes() {
        let (_dir, f) = files();
        assert_eq!(
            f.list(r"C:\nope").unwrap_err().code,
            codes::ERROR_PATH_NOT_FOUND
        );
        assert_eq!(
            f.download(r"C:\nope\x", 0, 1).unwrap_err().code,
            codes::ERROR_PATH_NOT_FOUND
        );
        assert_eq!(
            f.remove("C:\\").unwrap_err().code,
            codes::ERROR_ACCESS_DENIED
        );
        assert_eq!(
            f.stat(r"C:\..\x").unwrap_err().code,
            codes::ERROR_BAD_PATHNAME
        );
    }
}

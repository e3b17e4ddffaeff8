//! Streaming file transfer over SFTP in 1 MiB blocks (8 KiB blocks collapse throughput on
//! any real RTT), hashing as the bytes pass. Paths go to SFTP as raw bytes, never through a
//! shell. Blocking; runs on a `spawn_blocking` thread.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use ssh2::{OpenFlags, OpenType, Sftp};

use super::connect::Conn;
use super::pool::OpError;
use crate::error::{TransportError, ssh_is_transient};

/// Transfer block size.
pub(crate) const BLOCK: usize = 1024 * 1024;

/// Size and hex SHA-256 of what went through.
pub(crate) struct Sent {
    pub(crate) size: u64,
    pub(crate) sha256: String,
}

fn open_sftp(conn: &Conn, target: &str, stall: Duration) -> Result<Sftp, OpError> {
    conn.session.set_blocking(true);
    // A transfer has no overall deadline (its length depends on size); this bounds each
    // blocking call, so a peer that stops answering is noticed.
    conn.session
        .set_timeout(u32::try_from(stall.as_millis()).unwrap_or(u32::MAX));
    conn.session.sftp().map_err(|e| {
        let transient = ssh_is_transient(&e);
        let err = TransportError::Session {
            target: target.to_owned(),
            op: "start the sftp subsystem".into(),
            transient,
            source: Box::new(e),
        };
        if transient {
            OpError::broken_before_start(err)
        } else {
            OpError::keep(err)
        }
    })
}

fn remote_err(target: &str, op: &'static str, path: &str, e: ssh2::Error) -> OpError {
    let broken = ssh_is_transient(&e);
    let err = TransportError::RemoteFile {
        target: target.to_owned(),
        op,
        path: path.to_owned(),
        source: e,
    };
    if broken {
        OpError::broken(err)
    } else {
        OpError::keep(err)
    }
}

/// An I/O error in the middle of a transfer: the session state is unknown, so the
/// connection is not reused.
fn remote_io_err(target: &str, op: &str, path: &str, e: std::io::Error) -> OpError {
    OpError::broken(TransportError::Session {
        target: target.to_owned(),
        op: format!("{op} remote file {path:?}"),
        transient: crate::error::io_is_transient(&e) || e.kind() == std::io::ErrorKind::Other,
        source: Box::new(e),
    })
}

fn local_err(op: &'static str, path: &Path, source: std::io::Error) -> OpError {
    OpError::keep(TransportError::LocalIo {
        op,
        path: path.to_owned(),
        source,
    })
}

/// Copies a local file to `remote` (created or truncated, mode 0644). A second thread
/// reads and hashes the local file while this one writes to SFTP, so hashing costs no
/// transfer time.
pub(crate) fn upload(
    conn: &mut Conn,
    local: &Path,
    remote: &str,
    target: &str,
    stall: Duration,
) -> Result<Sent, OpError> {
    let src = File::open(local).map_err(|e| local_err("open", local, e))?;
    let sftp = open_sftp(conn, target, stall)?;
    let result = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let reader = scope.spawn(move || read_and_hash(src, tx));
        let written = (|| {
            let mut dst = sftp
                .open_mode(
                    Path::new(remote),
                    OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                    0o644,
                    OpenType::File,
                )
                .map_err(|e| remote_err(target, "create", remote, e))?;
            for block in rx.iter() {
                dst.write_all(&block)
                    .map_err(|e| remote_io_err(target, "write", remote, e))?;
            }
            dst.close()
                .map_err(|e| remote_err(target, "close", remote, e))
        })();
        // On a write error `rx` is dropped here, which stops the reader.
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the local reader thread panicked")));
        written?;
        read.map_err(|e| local_err("read", local, e))
    });
    conn.session.set_timeout(0);
    result
}

/// Reads `src` in blocks, hashing each, and hands them on until EOF or until the receiver
/// goes away.
fn read_and_hash(mut src: File, tx: std::sync::mpsc::SyncSender<Vec<u8>>) -> std::io::Result<Sent> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let mut buf = vec![0u8; BLOCK];
        let n = read_full(&mut src, &mut buf)?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        hasher.update(&buf);
        size += n as u64;
        if tx.send(buf).is_err() {
            break;
        }
    }
    Ok(Sent {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// The remote file's size as SFTP reports it.
pub(crate) fn remote_size(
    conn: &mut Conn,
    remote: &str,
    target: &str,
    stall: Duration,
) -> Result<u64, OpError> {
    let sftp = open_sftp(conn, target, stall)?;
    let st = sftp
        .stat(Path::new(remote))
        .map_err(|e| remote_err(target, "stat", remote, e));
    conn.session.set_timeout(0);
    Ok(st?.size.unwrap_or(0))
}

/// Copies `remote` into `partial` (created or truncated); the caller renames it into place
/// once verified. A second thread hashes and writes the local file while this one reads
/// from SFTP.
pub(crate) fn download(
    conn: &mut Conn,
    remote: &str,
    partial: &Path,
    target: &str,
    stall: Duration,
) -> Result<(Sent, u64), OpError> {
    let sftp = open_sftp(conn, target, stall)?;
    let result = (|| {
        let mut src = sftp
            .open(Path::new(remote))
            .map_err(|e| remote_err(target, "open", remote, e))?;
        let expected = src
            .stat()
            .map_err(|e| remote_err(target, "stat", remote, e))?
            .size
            .unwrap_or(0);
        let dst = File::create(partial).map_err(|e| local_err("create", partial, e))?;
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
            let writer = scope.spawn(move || hash_and_write(dst, rx));
            let read = (|| {
                loop {
                    // One read per full-size buffer: libssh2 keeps as many read requests in
                    // flight as the buffer is long, so refilling a shrinking remainder
                    // would drain the pipeline at the end of every block.
                    let mut buf = vec![0u8; BLOCK];
                    let n = read_retrying(&mut src, &mut buf)
                        .map_err(|e| remote_io_err(target, "read", remote, e))?;
                    if n == 0 {
                        return Ok(());
                    }
                    buf.truncate(n);
                    if tx.send(buf).is_err() {
                        // The writer failed; its error is reported below.
                        return Ok(());
                    }
                }
            })();
            drop(tx);
            let written = writer
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the local writer thread panicked")));
            read?;
            let sent = written.map_err(|e| local_err("write", partial, e))?;
            Ok((sent, expected))
        })
    })();
    conn.session.set_timeout(0);
    result
}

fn hash_and_write(dst: File, rx: std::sync::mpsc::Receiver<Vec<u8>>) -> std::io::Result<Sent> {
    // No fsync: the rename after verification is about never exposing a half or
    // unverified file under the final name, not about surviving a power cut.
    let mut dst = std::io::BufWriter::with_capacity(BLOCK, dst);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    for block in rx.iter() {
        hasher.update(&block);
        dst.write_all(&block)?;
        size += block.len() as u64;
    }
    dst.flush()?;
    Ok(Sent {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// One `read`, retried on EINTR.
fn read_retrying(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Fills `buf` as far as the reader allows (SFTP reads return short chunks).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// `dir/.name.hvlab-partial`: beside the target, so the final rename stays on one
/// file system.
pub(crate) fn partial_path(local: &Path) -> PathBuf {
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    local.with_file_name(format!(".{name}.hvlab-partial"))
}

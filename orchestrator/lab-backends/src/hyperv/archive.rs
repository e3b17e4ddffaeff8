//! Bulk files: a deploy goes to the guest as one gzip'd tar (one copy, one extraction,
//! instead of a round trip per file), and a dump comes back gzip'd, unpacked here and
//! checked against the hash the guest computed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// Entry names in the archive: `f0`, `f1`, ... (destinations are Windows paths, which tar
/// entry names cannot be).
pub fn entry_name(i: usize) -> String {
    format!("f{i}")
}

/// Writes `files` into a `.tar.gz` at `out`, entry `i` holding `files[i]`.
pub fn build(files: &[PathBuf], out: &Path) -> std::io::Result<()> {
    let file = std::fs::File::create(out)?;
    let gz = GzEncoder::new(std::io::BufWriter::new(file), Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (i, f) in files.iter().enumerate() {
        let mut src = std::fs::File::open(f)?;
        tar.append_file(entry_name(i), &mut src)?;
    }
    tar.into_inner()?.finish()?.flush()
}

/// Unpacks a gzip file into `out`, returning the size and SHA-256 of what was written.
pub fn gunzip(gz: &Path, out: &Path) -> std::io::Result<(u64, String)> {
    let mut dec = GzDecoder::new(std::io::BufReader::new(std::fs::File::open(gz)?));
    let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let n = dec.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        w.write_all(&buf[..n])?;
        size += n as u64;
    }
    w.flush()?;
    Ok((size, hex::encode(hasher.finalize())))
}

/// Size and SHA-256 of a local file.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Gzips `data` (what the guest's `GZipStream` produces; used by tests and test doubles).
pub fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).expect("write to memory");
    enc.finish().expect("finish in memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_holds_each_file_under_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.sys");
        let b = dir.path().join("b.exe");
        std::fs::write(&a, b"driver").unwrap();
        std::fs::write(&b, vec![7u8; 100_000]).unwrap();
        let out = dir.path().join("deploy.tar.gz");
        build(&[a, b], &out).unwrap();
        let mut ar = tar::Archive::new(GzDecoder::new(std::fs::File::open(&out).unwrap()));
        let got: Vec<(String, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.size())
            })
            .collect();
        assert_eq!(got, vec![("f0".into(), 6), ("f1".into(), 100_000)]);
    }

    #[test]
    fn gunzip_restores_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("d.gz");
        std::fs::write(&gz, gzip_bytes(b"PAGEDU64 dump")).unwrap();
        let out = dir.path().join("d");
        let (size, hash) = gunzip(&gz, &out).unwrap();
        assert_eq!(size, 13);
        assert_eq!(std::fs::read(&out).unwrap(), b"PAGEDU64 dump");
        assert_eq!(hash, hex::encode(Sha256::digest(b"PAGEDU64 dump")));
    }
}

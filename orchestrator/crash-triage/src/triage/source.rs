//! Where dump bytes come from (a file, or memory for tests and fuzzing), with positioned
//! reads that never pull in more than asked.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::sync::Arc;

/// Read + Seek that can move to the parser thread.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

#[derive(Debug)]
pub enum Source {
    File(File),
    Bytes(Arc<[u8]>),
}

impl Source {
    pub fn len(&self) -> io::Result<u64> {
        match self {
            Self::File(f) => Ok(f.metadata()?.len()),
            Self::Bytes(b) => Ok(b.len() as u64),
        }
    }

    /// Fill `buf` from `offset`; `UnexpectedEof` when the source ends first.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match self {
            Self::File(f) => {
                let mut f = f;
                f.seek(SeekFrom::Start(offset))?;
                f.read_exact(buf)
            }
            Self::Bytes(b) => {
                let start = usize::try_from(offset).map_err(|_| eof())?;
                let end = start.checked_add(buf.len()).ok_or_else(eof)?;
                let src = b.get(start..end).ok_or_else(eof)?;
                buf.copy_from_slice(src);
                Ok(())
            }
        }
    }

    /// An independent reader over the same bytes, for kdmp-parser.
    pub fn reader(&self) -> io::Result<Box<dyn ReadSeek>> {
        match self {
            // Buffered: kdmp-parser reads bitmaps one byte at a time.
            Self::File(f) => Ok(Box::new(io::BufReader::with_capacity(
                64 * 1024,
                f.try_clone()?,
            ))),
            Self::Bytes(b) => Ok(Box::new(Cursor::new(Arc::clone(b)))),
        }
    }
}

fn eof() -> io::Error {
    io::Error::from(io::ErrorKind::UnexpectedEof)
}

/// A reader that shows a patched copy of the header in place of the file's first bytes.
///
/// Triage uses it to hide pointers from kdmp-parser whose walks are unbounded on hostile
/// dumps (see `kdmp.rs`); everything after the header is the file itself.
pub struct Overlay {
    header: Vec<u8>,
    inner: Box<dyn ReadSeek>,
    pos: u64,
    /// Where the inner reader is, so sequential reads don't seek (a seek would drop the
    /// buffer of a buffered reader).
    inner_at: Option<u64>,
    len: u64,
}

impl Overlay {
    pub fn new(header: Vec<u8>, inner: Box<dyn ReadSeek>, len: u64) -> Self {
        Self {
            header,
            inner,
            pos: 0,
            inner_at: None,
            len,
        }
    }
}

impl Read for Overlay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(rest) = self
            .header
            .get(self.pos as usize..)
            .filter(|r| !r.is_empty())
        {
            let n = buf.len().min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.pos += n as u64;
            return Ok(n);
        }
        if self.inner_at != Some(self.pos) {
            self.inner.seek(SeekFrom::Start(self.pos))?;
        }
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        self.inner_at = Some(self.pos);
        Ok(n)
    }
}

impl Seek for Overlay {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        self.pos = target;
        Ok(target)
    }
}

//! Framing: `u32` big-endian length + JSON body, on byte slices and over `std::io`.
//!
//! The slice functions suit async clients (read the 4-byte prefix, check it with
//! [`frame_body_len`], read the body, decode it with `decode_*_body`) and streaming
//! decoders ([`split_frame`] on a growing buffer). The `std::io` functions are what the
//! guest and sync test clients use.

use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{MAX_FRAME_LEN, Request, Response};

/// Why a frame could not be encoded, read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: u32 },
    #[error("truncated frame: expected {expected} bytes, got {got}")]
    Truncated { expected: u64, got: u64 },
    #[error("{trailing} trailing bytes after the frame")]
    TrailingBytes { trailing: u64 },
    #[error("decode frame body: {0}")]
    Json(#[source] serde_json::Error),
    #[error("encode frame body: {0}")]
    Encode(#[source] serde_json::Error),
    /// The peer closed the connection cleanly between frames.
    #[error("connection closed")]
    Closed,
    #[error("frame i/o")]
    Io(#[source] io::Error),
}

/// Checks a frame's 4-byte prefix and returns the body length it announces.
pub fn frame_body_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix);
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len as usize)
}

/// Splits one complete frame off the front of `buf`: `Ok(None)` when more bytes are
/// needed, else the body and the number of bytes the frame occupies.
pub fn split_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(prefix) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = frame_body_len(*prefix)?;
    let total = 4 + len;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((&buf[4..total], total)))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; 4];
    serde_json::to_writer(&mut out, value).map_err(FrameError::Encode)?;
    let len = out.len() - 4;
    if len > MAX_FRAME_LEN as usize {
        return Err(FrameError::TooLarge {
            len: len as u64,
            max: MAX_FRAME_LEN,
        });
    }
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Decodes exactly one complete frame (prefix + body, nothing after it).
fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, FrameError> {
    let Some(prefix) = frame.first_chunk::<4>() else {
        return Err(FrameError::Truncated {
            expected: 4,
            got: frame.len() as u64,
        });
    };
    let len = frame_body_len(*prefix)?;
    let body = &frame[4..];
    if body.len() < len {
        return Err(FrameError::Truncated {
            expected: len as u64,
            got: body.len() as u64,
        });
    }
    if body.len() > len {
        return Err(FrameError::TrailingBytes {
            trailing: (body.len() - len) as u64,
        });
    }
    decode_body(body)
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    if body.len() > MAX_FRAME_LEN as usize {
        return Err(FrameError::TooLarge {
            len: body.len() as u64,
            max: MAX_FRAME_LEN,
        });
    }
    serde_json::from_slice(body).map_err(FrameError::Json)
}

/// Encodes a request as a complete frame (prefix + body).
pub fn encode_request(req: &Request) -> Result<Vec<u8>, FrameError> {
    encode(req)
}

/// Encodes a response as a complete frame (prefix + body).
pub fn encode_response(resp: &Response) -> Result<Vec<u8>, FrameError> {
    encode(resp)
}

/// Decodes one complete request frame (prefix + body).
pub fn decode_request(frame: &[u8]) -> Result<Request, FrameError> {
    decode(frame)
}

/// Decodes one complete response frame (prefix + body).
pub fn decode_response(frame: &[u8]) -> Result<Response, FrameError> {
    decode(frame)
}

/// Decodes a request body (the bytes after the prefix).
pub fn decode_request_body(body: &[u8]) -> Result<Request, FrameError> {
    decode_body(body)
}

/// Decodes a response body (the bytes after the prefix).
pub fn decode_response_body(body: &[u8]) -> Result<Response, FrameError> {
    decode_body(body)
}

/// Reads one frame body. A clean end of stream before the prefix is [`FrameError::Closed`];
/// an end inside the frame is [`FrameError::Truncated`]. An oversized length is reported
/// before any of the body is read.
pub fn read_frame(r: &mut impl Read) -> Result<Vec<u8>, FrameError> {
    let mut prefix = [0u8; 4];
    let got = read_full(r, &mut prefix)?;
    if got == 0 {
        return Err(FrameError::Closed);
    }
    if got < 4 {
        return Err(FrameError::Truncated {
            expected: 4,
            got: got as u64,
        });
    }
    let len = frame_body_len(prefix)?;
    let mut body = vec![0u8; len];
    let got = read_full(r, &mut body)?;
    if got < len {
        return Err(FrameError::Truncated {
            expected: len as u64,
            got: got as u64,
        });
    }
    Ok(body)
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, FrameError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(got)
}

/// Writes one frame with `body` and flushes.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> Result<(), FrameError> {
    if body.len() > MAX_FRAME_LEN as usize {
        return Err(FrameError::TooLarge {
            len: body.len() as u64,
            max: MAX_FRAME_LEN,
        });
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    w.write_all(&frame).map_err(FrameError::Io)?;
    w.flush().map_err(FrameError::Io)
}

/// Reads and decodes one request frame.
pub fn read_request(r: &mut impl Read) -> Result<Request, FrameError> {
    decode_body(&read_frame(r)?)
}

/// Reads and decodes one response frame.
pub fn read_response(r: &mut impl Read) -> Result<Response, FrameError> {
    decode_body(&read_frame(r)?)
}

/// Encodes and writes one request frame.
pub fn write_request(w: &mut impl Write, req: &Request) -> Result<(), FrameError> {
    write_all_flush(w, &encode(req)?)
}

/// Encodes and writes one response frame.
pub fn write_response(w: &mut impl Write, resp: &Response) -> Result<(), FrameError> {
    write_all_flush(w, &encode(resp)?)
}

fn write_all_flush(w: &mut impl Write, frame: &[u8]) -> Result<(), FrameError> {
    w.write_all(frame).map_err(FrameError::Io)?;
    w.flush().map_err(FrameError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_frame_waits_for_the_whole_frame() {
        let frame = encode_request(&Request::Ping).unwrap();
        assert!(split_frame(&frame[..3]).unwrap().is_none());
        assert!(split_frame(&frame[..frame.len() - 1]).unwrap().is_none());
        let (body, used) = split_frame(&frame).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(decode_request_body(body).unwrap(), Request::Ping);
    }

    #[test]
    fn oversized_prefix_is_refused_before_the_body() {
        let err = frame_body_len((MAX_FRAME_LEN + 1).to_be_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "frame body of 8388609 bytes exceeds the limit of 8388608 bytes"
        );
    }

    #[test]
    fn read_frame_distinguishes_close_from_truncation() {
        assert!(matches!(read_frame(&mut &[][..]), Err(FrameError::Closed)));
        let frame = encode_request(&Request::Ping).unwrap();
        let err = read_frame(&mut &frame[..6]).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { .. }), "{err}");
    }
}

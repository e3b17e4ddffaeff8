//! The agent's TCP server on loopback: one thread per connection (at most
//! [`MAX_CONNECTIONS`]), frames in, frames out, and robust handling of bad input.
//!
//! Bad input never takes the guest down:
//! - a body that is not a valid request gets `Error { code: 13 }` and the connection goes on;
//! - a length above the limit gets `Error { code: 111 }`; when the length is at most
//!   [`DRAIN_LIMIT`] the body is read and dropped and the connection goes on, above that
//!   the guest answers and closes (reading it would take too long to be worth it);
//! - a frame cut short by the peer gets an error reply if the peer still reads, then a close.
//!
//! [`Server::stop`] closes the listener and every open connection, which is what a crash
//! or power-off looks like from the client's side.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use parking_lot::Mutex;

use crate::protocol::{
    MAX_FRAME_LEN, Request, Response, codes, decode_request_body, write_response,
};

/// Connections served at once; more are answered with an error and closed.
pub const MAX_CONNECTIONS: usize = 64;
/// Oversized bodies up to this length are drained so the connection can go on.
pub const DRAIN_LIMIT: u64 = 4 * MAX_FRAME_LEN as u64;

/// What answers requests.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> Response;
    /// Called after the response to a `Reboot` or `Shutdown` was written (power transitions
    /// happen here, so the client gets its `Ok` before the guest goes away).
    fn after_response(&self, _req: &Request) {}
    /// Whether the machine went down while the request ran (a bugcheck): a crashed machine
    /// sends nothing more, so its reply is dropped with the connection.
    fn down(&self) -> bool {
        false
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Mutex<Option<thread::JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct Shared {
    stopping: AtomicBool,
    next_conn: AtomicU64,
    /// Clones of the open connections, to shut them down on stop.
    conns: Mutex<Vec<(u64, TcpStream)>>,
}

impl Server {
    /// Listens on `127.0.0.1:0` and serves `handler` on a background thread.
    pub fn start<H: Handler>(handler: Arc<H>) -> io::Result<Server> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let accept_thread = thread::Builder::new()
            .name("agent-accept".into())
            .spawn(move || accept_loop(listener, s, handler))?;
        Ok(Server {
            addr,
            shared,
            accept_thread: Mutex::new(Some(accept_thread)),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and closes every connection; idempotent.
    pub fn stop(&self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        for (_, conn) in self.shared.conns.lock().drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
        // Wake the blocking accept so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept_thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop<H: Handler>(listener: TcpListener, shared: Arc<Shared>, handler: Arc<H>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        {
            let mut conns = shared.conns.lock();
            if conns.len() >= MAX_CONNECTIONS {
                drop(conns);
                let _ = write_response(
                    &mut stream,
                    &Response::error(
                        codes::ERROR_TOO_MANY_OPEN_FILES,
                        format!("accept connection: {MAX_CONNECTIONS} connections are open"),
                    ),
                );
                continue;
            }
            match stream.try_clone() {
                Ok(clone) => conns.push((id, clone)),
                Err(_) => continue,
            }
        }
        let s = shared.clone();
        let h = handler.clone();
        let spawned = thread::Builder::new()
            .name(format!("agent-conn-{id}"))
            .spawn(move || {
                serve_connection(stream, &*h, &s);
                s.conns.lock().retain(|(c, _)| *c != id);
            });
        if spawned.is_err() {
            shared.conns.lock().retain(|(c, _)| *c != id);
        }
    }
}

fn serve_connection<H: Handler>(mut stream: TcpStream, handler: &H, shared: &Shared) {
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let reply = match read_body(&mut stream) {
            Ok(Body::Frame(body)) => match decode_request_body(&body) {
                Ok(req) => {
                    // Only power requests need a look after the reply; cloning every request
                    // would copy each upload chunk once more.
                    let power =
                        matches!(req, Request::Reboot | Request::Shutdown).then(|| req.clone());
                    let resp = handler.handle(req);
                    // A tool that saw the kernel stop under it would otherwise report that
                    // as its own failure; on Windows the bugcheck ends it and the
                    // connection before any answer, and the client sees the guest vanish.
                    if handler.down() {
                        return;
                    }
                    if write_response(&mut stream, &resp).is_err() {
                        return;
                    }
                    if let Some(req) = power {
                        handler.after_response(&req);
                    }
                    continue;
                }
                Err(e) => Next::Reply(Response::error(
                    codes::ERROR_INVALID_DATA,
                    format!("decode request: {}", lab_error::Chain(&e)),
                )),
            },
            Ok(Body::Drained(len)) => Next::Reply(too_large(len)),
            Ok(Body::Absurd(len)) => Next::ReplyAndClose(too_large(len)),
            Ok(Body::Closed) => return,
            Ok(Body::Truncated { expected, got }) => Next::ReplyAndClose(Response::error(
                codes::ERROR_INVALID_DATA,
                format!("read request: truncated frame: expected {expected} bytes, got {got}"),
            )),
            Err(_) => return,
        };
        match reply {
            Next::Reply(resp) => {
                if write_response(&mut stream, &resp).is_err() {
                    return;
                }
            }
            Next::ReplyAndClose(resp) => {
                let _ = write_response(&mut stream, &resp);
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
        }
    }
}

enum Next {
    Reply(Response),
    ReplyAndClose(Response),
}

enum Body {
    Frame(Vec<u8>),
    Drained(u64),
    Absurd(u64),
    Truncated { expected: u64, got: u64 },
    Closed,
}

fn too_large(len: u64) -> Response {
    Response::error(
        codes::ERROR_BUFFER_OVERFLOW,
        format!(
            "read request: frame body of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes"
        ),
    )
}

/// Reads one frame body, classifying every way it can go wrong.
fn read_body(stream: &mut TcpStream) -> io::Result<Body> {
    let mut prefix = [0u8; 4];
    let got = read_up_to(stream, &mut prefix)?;
    if got == 0 {
        return Ok(Body::Closed);
    }
    if got < 4 {
        return Ok(Body::Truncated {
            expected: 4,
            got: got as u64,
        });
    }
    let len = u64::from(u32::from_be_bytes(prefix));
    if len > u64::from(MAX_FRAME_LEN) {
        if len > DRAIN_LIMIT {
            return Ok(Body::Absurd(len));
        }
        let drained = io::copy(&mut (&mut *stream).take(len), &mut io::sink())?;
        if drained < len {
            return Ok(Body::Truncated {
                expected: len,
                got: drained,
            });
        }
        return Ok(Body::Drained(len));
    }
    let mut body = vec![0u8; len as usize];
    let got = read_up_to(stream, &mut body)?;
    if (got as u64) < len {
        return Ok(Body::Truncated {
            expected: len,
            got: got as u64,
        });
    }
    Ok(Body::Frame(body))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

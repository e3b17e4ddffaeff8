//! A WinRM listener stand-in: HTTPS on a loopback port (fixture self-signed certificate),
//! HTTP/1.1 keep-alive, answering each WS-Management action with envelopes recorded from a
//! Windows Server 2022 WinRM service, and logging every request for the tests to inspect.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use parking_lot::Mutex;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub const CERT_DER: &[u8] = include_bytes!("../fixtures/winrm-test-cert.der");
const KEY_DER: &[u8] = include_bytes!("../fixtures/winrm-test-key.der");

/// SHA-256 fingerprint of the fixture certificate, as a user would pin it.
pub fn fixture_fingerprint() -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(CERT_DER))
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Req {
    /// Last path segment of the WS-Addressing action: Create, Command, Receive, Signal,
    /// Send, Delete.
    pub action: String,
    pub authorization: Option<String>,
    pub body: String,
}

impl Req {
    /// Text of the first `<...name ...>text</...name>` element.
    pub fn element(&self, name: &str) -> Option<String> {
        let open = self.body.find(&format!(":{name}>"))?;
        let start = open + name.len() + 2;
        let end = start + self.body[start..].find('<')?;
        Some(self.body[start..end].to_owned())
    }

    /// Every `<rsp:Arguments>` value, in order.
    pub fn arguments(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = self.body.as_str();
        while let Some(i) = rest.find("<rsp:Arguments>") {
            let tail = &rest[i + "<rsp:Arguments>".len()..];
            let end = tail.find("</rsp:Arguments>").unwrap();
            out.push(tail[..end].to_owned());
            rest = &tail[end..];
        }
        out
    }

    /// Decoded stdin bytes of a Send request.
    pub fn stdin(&self) -> Vec<u8> {
        let start = self.body.find("<rsp:Stream").unwrap();
        let start = start + self.body[start..].find('>').unwrap() + 1;
        let end = start + self.body[start..].find("</rsp:Stream>").unwrap();
        B64.decode(self.body[start..end].trim()).unwrap()
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub enum Reply {
    Ok(String),
    Status(u16, String),
    /// Answer after a pause.
    Later(Duration, Box<Reply>),
}

type Script = dyn Fn(&Req, usize) -> Reply + Send + Sync;

/// The running responder. `script(req, n)` answers the n-th request (0-based) of its
/// action.
pub struct Mock {
    pub port: u16,
    pub log: Arc<Mutex<Vec<Req>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mock {
    pub async fn start(script: impl Fn(&Req, usize) -> Reply + Send + Sync + 'static) -> Mock {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(CERT_DER.to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(KEY_DER.to_vec())),
            )
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let task = {
            let log = log.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acceptor, log, script) = (acceptor.clone(), log.clone(), script.clone());
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            serve(tls, log, script).await;
                        }
                    });
                }
            })
        };
        Mock { port, log, task }
    }

    pub fn actions(&self) -> Vec<String> {
        self.log.lock().iter().map(|r| r.action.clone()).collect()
    }

    pub fn requests(&self, action: &str) -> Vec<Req> {
        self.log
            .lock()
            .iter()
            .filter(|r| r.action == action)
            .cloned()
            .collect()
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    log: Arc<Mutex<Vec<Req>>>,
    script: Arc<Script>,
) {
    let mut buf = Vec::new();
    loop {
        // Headers.
        let header_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < header_end + len {
            let mut chunk = [0u8; 65536];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[header_end..header_end + len]).into_owned();
        buf.drain(..header_end + len);
        let action = body
            .split("Action s:mustUnderstand=\"true\">")
            .nth(1)
            .and_then(|a| a.split('<').next())
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or("?")
            .to_owned();
        let req = Req {
            action: action.clone(),
            authorization: header("authorization"),
            body,
        };
        let nth = {
            let mut log = log.lock();
            let n = log.iter().filter(|r| r.action == action).count();
            log.push(req.clone());
            n
        };
        let mut reply = script(&req, nth);
        while let Reply::Later(d, r) = reply {
            tokio::time::sleep(d).await;
            reply = *r;
        }
        let (status, body) = match reply {
            Reply::Ok(b) => (200, b),
            Reply::Status(code, b) => (code, b),
            Reply::Later(..) => unreachable!(),
        };
        let reason = match status {
            200 => "OK",
            401 => "Unauthorized",
            500 => "Internal Server Error",
            _ => "Other",
        };
        let extra = if status == 401 {
            "WWW-Authenticate: Basic realm=\"WSMAN\"\r\n"
        } else {
            ""
        };
        let resp = format!(
            "HTTP/1.1 {status} {reason}\r\nServer: Microsoft-HTTPAPI/2.0\r\n{extra}\
             Content-Type: application/soap+xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

const NS: &str = r#"xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell" xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd""#;

fn envelope(action: &str, body: &str) -> String {
    format!(
        r#"<s:Envelope {NS}><s:Header><a:Action>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/{action}</a:Action><a:MessageID>uuid:6A3C1E55-0D63-4B1B-9A0E-5C3D2B1A0F01</a:MessageID><a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To><a:RelatesTo>uuid:00000000-0000-0000-0000-000000000000</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>"#
    )
}

pub fn create_response(shell_id: &str) -> String {
    format!(
        r#"<s:Envelope {NS}><s:Header><a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse</a:Action><a:MessageID>uuid:2F0D7C5A-8B0E-4C59-A3D1-6E2B9F4C7A10</a:MessageID><a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To><a:RelatesTo>uuid:00000000-0000-0000-0000-000000000000</a:RelatesTo></s:Header><s:Body><x:ResourceCreated><a:Address>https://hv01.lab.example:5986/wsman</a:Address><a:ReferenceParameters><w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI><w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet></a:ReferenceParameters></x:ResourceCreated><rsp:Shell xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"><rsp:ShellId>{shell_id}</rsp:ShellId><rsp:ResourceUri>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</rsp:ResourceUri><rsp:Owner>HV01\labadmin</rsp:Owner><rsp:ClientIP>10.0.0.5</rsp:ClientIP><rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut><rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams><rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime><rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity></rsp:Shell></s:Body></s:Envelope>"#
    )
}

pub fn command_response(command_id: &str) -> String {
    envelope(
        "CommandResponse",
        &format!(
            "<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
        ),
    )
}

/// A Receive answer; `exit_code: None` means the command is still running.
pub fn receive_response(
    command_id: &str,
    stdout: &[u8],
    stderr: &[u8],
    exit_code: Option<i32>,
) -> String {
    let mut body = String::from("<rsp:ReceiveResponse>");
    let end = if exit_code.is_some() {
        r#" End="true""#
    } else {
        ""
    };
    body.push_str(&format!(
        r#"<rsp:Stream Name="stdout" CommandId="{command_id}"{end}>{}</rsp:Stream>"#,
        B64.encode(stdout)
    ));
    body.push_str(&format!(
        r#"<rsp:Stream Name="stderr" CommandId="{command_id}"{end}>{}</rsp:Stream>"#,
        B64.encode(stderr)
    ));
    match exit_code {
        Some(code) => body.push_str(&format!(
            r#"<rsp:CommandState CommandId="{command_id}" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"><rsp:ExitCode>{code}</rsp:ExitCode></rsp:CommandState>"#
        )),
        None => body.push_str(&format!(
            r#"<rsp:CommandState CommandId="{command_id}" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running"></rsp:CommandState>"#
        )),
    }
    body.push_str("</rsp:ReceiveResponse>");
    envelope("ReceiveResponse", &body)
}

pub fn signal_response() -> String {
    envelope("SignalResponse", "<rsp:SignalResponse/>")
}

pub fn send_response() -> String {
    envelope("SendResponse", "<rsp:SendResponse/>")
}

pub fn delete_response() -> String {
    r#"<s:Envelope xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"><s:Header><a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse</a:Action><a:MessageID>uuid:9C1B2A3D-4E5F-4061-8273-94A5B6C7D8E9</a:MessageID><a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To><a:RelatesTo>uuid:00000000-0000-0000-0000-000000000000</a:RelatesTo></s:Header><s:Body></s:Body></s:Envelope>"#.to_owned()
}

/// The fault a Receive gets when no output arrived within OperationTimeout (HTTP 500).
pub fn timed_out_fault() -> Reply {
    Reply::Status(
        500,
        r#"<s:Envelope xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header><a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action><a:MessageID>uuid:0B8E7F61-2C3D-4E5F-8A9B-0C1D2E3F4A5B</a:MessageID><a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To><a:RelatesTo>uuid:00000000-0000-0000-0000-000000000000</a:RelatesTo></s:Header><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:TimedOut</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">The WS-Management service cannot complete the operation within the time specified in OperationTimeout.  </s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="2150858793" Machine="hv01.lab.example"><f:Message></f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>"#.to_owned(),
    )
}

/// The fault for a shell the server no longer knows (deleted, idle timeout).
pub fn unknown_shell_fault() -> Reply {
    Reply::Status(
        500,
        r#"<s:Envelope xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header><a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action></s:Header><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>w:InvalidSelectors</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">The request for the Windows Remote Shell with ShellId 1 failed because the shell was not found on the server. </s:Text></s:Reason></s:Fault></s:Body></s:Envelope>"#.to_owned(),
    )
}

/// Decodes a `-EncodedCommand` argument (UTF-16LE base64) back to the script.
pub fn decode_encoded_command(b64: &str) -> String {
    let bytes = B64.decode(b64).unwrap();
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).unwrap()
}

/// A well-behaved server: one shell, every command prints `stdout`/`stderr` in two Receive
/// rounds and exits with `exit_code`.
pub fn standard(
    stdout: &'static str,
    stderr: &'static str,
    exit_code: i32,
) -> impl Fn(&Req, usize) -> Reply + Send + Sync {
    move |req, n| match req.action.as_str() {
        "Create" => Reply::Ok(create_response(&format!("SHELL-{n}"))),
        "Command" => Reply::Ok(command_response(&format!("CMD-{n}"))),
        "Receive" => {
            let id = "CMD";
            // Odd rounds finish: first a partial chunk, then the rest with the exit code.
            if n % 2 == 0 {
                Reply::Ok(receive_response(id, stdout.as_bytes(), b"", None))
            } else {
                Reply::Ok(receive_response(
                    id,
                    b"",
                    stderr.as_bytes(),
                    Some(exit_code),
                ))
            }
        }
        "Signal" => Reply::Ok(signal_response()),
        "Send" => Reply::Ok(send_response()),
        "Delete" => Reply::Ok(delete_response()),
        _ => Reply::Status(400, String::new()),
    }
}

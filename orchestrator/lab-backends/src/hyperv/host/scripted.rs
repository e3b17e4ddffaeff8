//! A scripted PowerShell host: the test double (and the dry-run recorder). It renders every
//! script exactly as a real host would receive it, records it, and answers from a responder
//! that sees the operation and its typed parameters, with recorded outputs or errors. Files
//! put on the "host" live in memory, where responders can read and write them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::PowerShellHost;
use crate::hyperv::error::{PsError, PsErrorRecord};
use crate::hyperv::script::Script;

/// The host's files, by host path.
pub type HostFiles = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// What the scripted host answers to one script.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The script succeeded with this value (wrapped in the envelope).
    Value(serde_json::Value),
    /// A command in the script failed with this record.
    Error(PsErrorRecord),
    /// Exactly this output (a recorded envelope, or garbage).
    Raw(String),
    /// The script never finishes: the caller's timeout fires.
    Hang,
    /// The host cannot be reached (connection refused): a transport error, no output.
    Unreachable,
}

impl Reply {
    /// `Value(null)`: success with no output.
    pub fn ok() -> Reply {
        Reply::Value(serde_json::Value::Null)
    }

    /// PowerShell Direct's answer while the guest is still booting.
    pub fn ps_direct_booting() -> Reply {
        Reply::Error(PsErrorRecord {
            message: "An error has occurred which Windows PowerShell cannot handle. A remote \
                      session might have ended."
                .into(),
            command: Some("Invoke-Command".into()),
            fqid: "PSSessionStateBroken".into(),
            category: "OpenError".into(),
            exception: "System.Management.Automation.Remoting.PSDirectException".into(),
            hresult: -2146233087,
            layer: "host".into(),
        })
    }
}

/// One script the host received.
#[derive(Debug, Clone)]
pub struct ReceivedScript {
    pub op: &'static str,
    /// The complete text, as a real host would have run it.
    pub text: String,
    /// When it arrived: lines host round trips up with a run's events (the roundtrips
    /// benchmark attributes them to units and steps this way).
    pub at: chrono::DateTime<chrono::Utc>,
    /// For a file copy: the local file and the host path.
    pub copy: Option<(std::path::PathBuf, String)>,
}

type Responder = dyn Fn(&Script, &HostFiles) -> Reply + Send + Sync;

/// The scripted host.
pub struct ScriptedHost {
    name: String,
    responder: Box<Responder>,
    log: Arc<Mutex<Vec<ReceivedScript>>>,
    files: HostFiles,
}

impl std::fmt::Debug for ScriptedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedHost")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ScriptedHost {
    pub fn new(
        name: impl Into<String>,
        responder: impl Fn(&Script, &HostFiles) -> Reply + Send + Sync + 'static,
    ) -> Self {
        ScriptedHost {
            name: name.into(),
            responder: Box::new(responder),
            log: Default::default(),
            files: Default::default(),
        }
    }

    /// Every script received so far, in order (shared: clone before handing the host out).
    pub fn log(&self) -> Arc<Mutex<Vec<ReceivedScript>>> {
        self.log.clone()
    }

    /// The host's in-memory files.
    pub fn files(&self) -> HostFiles {
        self.files.clone()
    }

    fn record(&self, op: &'static str, text: String) {
        self.record_copy(op, text, None);
    }

    fn record_copy(&self, op: &'static str, text: String, copy: Option<(&Path, &str)>) {
        self.log.lock().expect("log lock").push(ReceivedScript {
            op,
            text,
            at: chrono::Utc::now(),
            copy: copy.map(|(l, h)| (l.to_path_buf(), h.to_owned())),
        });
    }
}

/// The envelope a real script prints for `reply`.
pub fn envelope_text(reply: &Reply) -> Option<String> {
    Some(match reply {
        Reply::Value(v) => serde_json::json!({"ok": true, "value": v}).to_string(),
        Reply::Error(r) => serde_json::json!({"ok": false, "error": {
            "message": r.message, "command": r.command, "fqid": r.fqid,
            "category": r.category, "exception": r.exception, "hresult": r.hresult,
            "layer": r.layer,
        }})
        .to_string(),
        Reply::Raw(s) => s.clone(),
        Reply::Hang | Reply::Unreachable => return None,
    })
}

impl PowerShellHost for ScriptedHost {
    fn target(&self) -> &str {
        &self.name
    }

    async fn run(&self, script: &Script, timeout: Duration) -> Result<String, PsError> {
        self.record(script.op, script.render());
        let reply = (self.responder)(script, &self.files);
        if let Reply::Unreachable = reply {
            return Err(PsError::Transport {
                op: script.op,
                target: self.name.clone(),
                source: Box::new(lab_transport::TransportError::Connect {
                    target: format!("{}:5986", self.name),
                    source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                }),
            });
        }
        match envelope_text(&reply) {
            Some(text) => Ok(text),
            None => {
                tokio::time::sleep(timeout).await;
                Err(PsError::Timeout {
                    op: script.op,
                    after: timeout,
                })
            }
        }
    }

    async fn put_file(&self, local: &Path, host_path: &str) -> Result<(), PsError> {
        self.record_copy(
            "file.put",
            format!("# copy {} to {host_path:?} on the host\n", local.display()),
            Some((local, host_path)),
        );
        // A dry run records the copy of a file that may not exist on this machine.
        let bytes = std::fs::read(local).unwrap_or_default();
        self.files
            .lock()
            .expect("files lock")
            .insert(host_path.to_owned(), bytes);
        Ok(())
    }

    async fn get_file(&self, host_path: &str, local: &Path) -> Result<(), PsError> {
        self.record_copy(
            "file.get",
            format!(
                "# copy {host_path:?} from the host to {}\n",
                local.display()
            ),
            Some((local, host_path)),
        );
        let bytes = self
            .files
            .lock()
            .expect("files lock")
            .get(host_path)
            .cloned()
            .ok_or_else(|| PsError::Unscripted {
                op: "file.get",
                detail: format!("no file {host_path} on the scripted host"),
            })?;
        std::fs::write(local, bytes).map_err(|source| PsError::Spawn {
            op: "file.get",
            program: format!("write {}", local.display()),
            source,
        })
    }
}

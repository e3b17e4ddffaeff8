//! `Guest` for a Windows VM on Hyper-V: every operation is a guest script run through
//! PowerShell Direct on the host (or straight over WinRM/SSH when the template says so).
//! Files travel through the host: one gzip'd tar per deploy (`Copy-VMFile` in, `tar.exe`
//! out), dumps gzip'd in the guest and copied back through a PowerShell Direct session.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lab_transport::{
    AnyTransport, HostKeyPolicy, RemoteOs, SshAuth, SshConfig, SshTransport, TlsVerify, Transport,
    TransportError, WinrmAuth, WinrmScheme, WinrmSettings, WinrmTransport,
};
use serde::de::DeserializeOwned;

use super::archive;
use super::error::PsError;
use super::host::{PowerShellHost, call, call_boot};
use super::parse::{self, List};
use super::script::{PsDirect, Script};
use super::scripts::files::FileHash;
use super::scripts::{guest as gs, host as hs};
use super::{GuestAccess, GuestAccessKind, HyperV, TemplateConfig};
use crate::error::{BackendError, Result};
use crate::guest::Guest;
use crate::model::{
    CrashControl, DirEntry, DumpKind, EventRecord, ExecOutput, FileInfo, ServiceSpec, ServiceState,
    StartType, Verifier,
};

/// Guest folder for files in transit.
const GUEST_STAGING: &str = r"C:\Windows\Temp\hvlab";

/// Distinguishes transfers of one process (staging file names).
static TRANSFER: AtomicU64 = AtomicU64::new(0);

/// A handle on one Hyper-V guest. Cheap to clone; holds no connection.
#[derive(Debug, Clone)]
pub struct HyperVGuest {
    hv: HyperV,
    vm: String,
    host: usize,
    template: String,
}

impl HyperVGuest {
    pub(super) fn new(hv: HyperV, vm: &str, host: usize, template: &str) -> Self {
        HyperVGuest {
            hv,
            vm: vm.to_owned(),
            host,
            template: template.to_owned(),
        }
    }

    /// This guest's template; a guest whose template left the lab cannot be reached.
    fn template(&self) -> Result<&TemplateConfig> {
        self.hv
            .template(&self.template)
            .ok_or_else(|| BackendError::VmState {
                vm: self.vm.clone(),
                operation: "connect to guest".into(),
                message: format!("template {} is not in the lab", self.template),
            })
    }

    fn direct(&self) -> Result<PsDirect> {
        let t = self.template()?;
        Ok(PsDirect {
            vm: self.vm.clone(),
            user: t.guest.user.clone(),
            password: self.hv.guest_password(t)?,
        })
    }

    fn access(&self) -> GuestAccessKind {
        self.hv
            .template(&self.template)
            .map(|t| t.guest.kind)
            .unwrap_or(GuestAccessKind::PowerShellDirect)
    }

    fn op_timeout(&self) -> Duration {
        self.hv.config().timing.op_timeout
    }

    /// Notes a boot id the guest reported, for [`Guest::take_seen_boot_id`].
    fn saw_boot(&self, id: String) {
        self.hv
            .inner
            .seen_boot
            .lock()
            .expect("boot id lock")
            .insert(self.vm.clone(), id);
    }

    /// Runs a guest script and parses its result. Every script but the boot id read itself
    /// reports the boot id too (noted for [`Guest::take_seen_boot_id`]).
    async fn run<T: DeserializeOwned>(&self, script: Script, timeout: Duration) -> Result<T> {
        let script = if script.op == "guest.boot_id" {
            script
        } else {
            script.with_boot_id()
        };
        let result: Result<(T, Option<String>), PsError> = match self.access() {
            GuestAccessKind::PowerShellDirect => {
                let script = script.through(self.direct()?);
                call_boot(self.hv.host(self.host), &script, timeout).await
            }
            // A dry run records what would go to the guest instead of connecting to it.
            GuestAccessKind::Winrm | GuestAccessKind::Ssh if !self.hv.config().read_secrets => {
                call_boot(self.hv.host(self.host), &script, timeout).await
            }
            GuestAccessKind::Winrm | GuestAccessKind::Ssh => {
                let transport = self.transport().await?;
                let out = transport
                    .powershell(&script.render(), timeout)
                    .await
                    .map_err(|source| PsError::Transport {
                        op: script.op,
                        target: transport.target().to_owned(),
                        source: Box::new(source),
                    });
                let out = match out {
                    Ok(o) if o.stdout.trim().is_empty() => Err(PsError::NoResult {
                        op: script.op,
                        code: o.exit_code,
                        stderr: o.stderr,
                    }),
                    Ok(o) => parse::envelope_boot(script.op, &o.stdout),
                    Err(e) => Err(e),
                };
                if out.as_ref().is_err_and(PsError::is_transient) {
                    // A reboot breaks the session; the next call connects again.
                    self.hv
                        .inner
                        .guest_transports
                        .lock()
                        .expect("transport lock")
                        .remove(&self.vm);
                }
                out
            }
        };
        let (value, boot) = result.map_err(|e| e.into_backend(&self.vm, true))?;
        if let Some(id) = boot {
            self.saw_boot(id);
        }
        Ok(value)
    }

    /// The WinRM/SSH connection to this guest, opened on first use at the address the
    /// host reports (link-local addresses skipped: they appear before DHCP answers).
    async fn transport(&self) -> Result<Arc<AnyTransport>> {
        if let Some(t) = self
            .hv
            .inner
            .guest_transports
            .lock()
            .expect("transport lock")
            .get(&self.vm)
        {
            return Ok(t.clone());
        }
        let t = self.template()?.guest.clone();
        let address = self.hv.address(&self.vm).await?.ok_or_else(|| {
            BackendError::connection(&self.vm, "the guest reports no routable address yet")
        })?;
        let transport = guest_transport(&address, &t).map_err(|e| BackendError::Connection {
            vm: self.vm.clone(),
            message: format!("set up the transport to {address}"),
            source: Some(e.into()),
        })?;
        let transport = Arc::new(transport);
        self.hv
            .inner
            .guest_transports
            .lock()
            .expect("transport lock")
            .insert(self.vm.clone(), transport.clone());
        Ok(transport)
    }

    async fn host_run(&self, script: &Script, timeout: Duration) -> Result<()> {
        call::<serde_json::Value, _>(self.hv.host(self.host), script, timeout)
            .await
            .map(|_| ())
            .map_err(|e| e.into_backend(&self.vm, true))
    }

    /// Runs a native tool in the guest.
    async fn native(
        &self,
        op: &'static str,
        program: &str,
        args: &[&str],
    ) -> Result<gs::ProcessResult> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let ms = self.op_timeout().as_millis() as u64;
        self.run(
            gs::process(op, program, &args, ms),
            self.op_timeout() + Duration::from_secs(30),
        )
        .await
    }

    /// `sc.exe` with the Windows error code of a failure as a guest error.
    async fn sc(&self, op: &'static str, args: &[&str]) -> Result<String> {
        let r = self.native(op, "sc.exe", args).await?;
        if r.exit_code != 0 {
            let text = format!("{}{}", r.stdout, r.stderr);
            let (code, message) = parse::sc_failure(&text).unwrap_or((
                r.exit_code as u32,
                text.split_whitespace().collect::<Vec<_>>().join(" "),
            ));
            return Err(BackendError::Guest {
                vm: self.vm.clone(),
                operation: op.replace("guest.", "").replace('_', " "),
                code,
                message: format!("sc.exe {}: {message}", args.join(" ")),
            });
        }
        Ok(r.stdout)
    }

    async fn sc_state(&self, op: &'static str, args: &[&str]) -> Result<ServiceState> {
        let out = self.sc(op, args).await?;
        parse::sc_state(&out).ok_or_else(|| BackendError::Protocol {
            vm: self.vm.clone(),
            message: format!("sc.exe {} printed no STATE line: {out:?}", args.join(" ")),
        })
    }

    fn checked(&self, op: &str, program: &str, r: gs::ProcessResult, ok: &[i32]) -> Result<()> {
        if ok.contains(&r.exit_code) {
            return Ok(());
        }
        Err(BackendError::Guest {
            vm: self.vm.clone(),
            operation: op.into(),
            code: r.exit_code as u32,
            message: format!(
                "{program} exited with code {}: {}",
                r.exit_code,
                format!("{} {}", r.stdout.trim(), r.stderr.trim()).trim()
            ),
        })
    }

    fn staging_name(&self, what: &str) -> String {
        let n = TRANSFER.fetch_add(1, Ordering::Relaxed);
        format!("{}-{}-{n}-{what}", std::process::id(), self.vm)
    }

    fn host_staging(&self, name: &str) -> String {
        format!(
            "{}\\{name}",
            self.hv.config().hosts[self.host].staging_dir()
        )
    }

    /// Uploads several files as one archive, extracted and hash-checked in the guest.
    pub async fn upload_files(&self, files: &[(PathBuf, String)]) -> Result<Vec<FileInfo>> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let local_dir = tempfile::tempdir().map_err(BackendError::io(
            "create a local staging folder",
            std::env::temp_dir(),
        ))?;
        let name = self.staging_name("deploy.tar.gz");
        let local = local_dir.path().join(&name);
        let sources: Vec<PathBuf> = files.iter().map(|(l, _)| l.clone()).collect();
        // A dry run plans a deploy of files that may not exist here; it has nothing to pack.
        let dry = !self.hv.config().read_secrets && sources.iter().any(|s| !s.is_file());
        let mut expected = Vec::new();
        if !dry {
            archive::build(&sources, &local)
                .map_err(BackendError::io("pack the deploy archive", &local))?;
            for s in &sources {
                expected.push(Some(
                    archive::hash_file(s).map_err(BackendError::io("hash a deploy file", s))?,
                ));
            }
        } else {
            expected.resize(sources.len(), None);
        }
        let host_path = self.host_staging(&name);
        let guest_archive = format!("{GUEST_STAGING}\\{name}");
        let host = self.hv.host(self.host);
        let transfer = self.hv.config().timing.transfer_timeout;
        tokio::time::timeout(transfer, host.put_file(&local, &host_path))
            .await
            .map_err(|_| BackendError::Timeout {
                vm: self.vm.clone(),
                operation: "copy the deploy archive to the host".into(),
                timeout: transfer,
            })?
            .map_err(|e| e.into_backend(&self.vm, true))?;
        let copy = hs::copy_to_guest(&self.vm, &host_path, &guest_archive);
        let copied = self.host_run(&copy, transfer).await;
        let _ = self
            .host_run(
                &super::scripts::files::remove(&host_path),
                self.op_timeout(),
            )
            .await;
        copied?;
        let entries: Vec<String> = (0..files.len()).map(archive::entry_name).collect();
        let destinations: Vec<String> = files.iter().map(|(_, r)| r.clone()).collect();
        let staging = format!("{GUEST_STAGING}\\{}", self.staging_name("extract"));
        let script = gs::extract(&guest_archive, &staging, &entries, &destinations);
        let placed: List<gs::Placed> = self.run(script, transfer).await?;
        if placed.0.len() != files.len() {
            return Err(BackendError::Protocol {
                vm: self.vm.clone(),
                message: format!(
                    "the deploy placed {} files, expected {}",
                    placed.0.len(),
                    files.len()
                ),
            });
        }
        let mut out = Vec::new();
        for ((p, want), (_, remote)) in placed.0.into_iter().zip(expected).zip(files) {
            if let Some((size, sha)) = want
                && (size != p.length || !sha.eq_ignore_ascii_case(&p.hash))
            {
                return Err(BackendError::HashMismatch {
                    vm: self.vm.clone(),
                    path: remote.clone(),
                    expected: sha,
                    actual: p.hash,
                });
            }
            out.push(FileInfo {
                size: p.length,
                sha256: p.hash.to_lowercase(),
            });
        }
        Ok(out)
    }
}

impl Guest for HyperVGuest {
    fn vm(&self) -> &str {
        &self.vm
    }

    async fn boot_id(&self) -> Result<String> {
        let info: gs::BootInfo = self.run(gs::boot_id(), self.op_timeout()).await?;
        // Readiness checks read it this way: the unit that follows a restore takes it.
        self.saw_boot(info.last_boot_up_time.clone());
        Ok(info.last_boot_up_time)
    }

    fn take_seen_boot_id(&self) -> Option<String> {
        self.hv
            .inner
            .seen_boot
            .lock()
            .expect("boot id lock")
            .remove(&self.vm)
    }

    async fn exec(&self, argv: &[String], timeout: Duration) -> Result<ExecOutput> {
        let Some((program, args)) = argv.split_first() else {
            return Err(BackendError::Guest {
                vm: self.vm.clone(),
                operation: "exec".into(),
                code: 87,
                message: "empty command".into(),
            });
        };
        let ms = timeout.as_millis().min(u128::from(u64::MAX)) as u64;
        // The guest kills the tool at its timeout; allow time for that and the answer.
        let script = gs::process("guest.exec", program, args, ms);
        let r: gs::ProcessResult = self.run(script, timeout + Duration::from_secs(60)).await?;
        Ok(ExecOutput {
            exit_code: r.exit_code,
            stdout: r.stdout,
            stderr: r.stderr,
            timed_out: r.timed_out,
        })
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<FileInfo> {
        let mut v = self
            .upload_files(&[(local.to_path_buf(), remote.to_owned())])
            .await?;
        Ok(v.remove(0))
    }

    async fn upload_many(&self, files: &[(PathBuf, String)]) -> Result<Vec<FileInfo>> {
        self.upload_files(files).await
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<FileInfo> {
        let transfer = self.hv.config().timing.transfer_timeout;
        let name = self.staging_name("download.gz");
        let guest_gz = format!("{GUEST_STAGING}\\{name}");
        let packed: gs::Compressed = self.run(gs::compress(remote, &guest_gz), transfer).await?;
        let host_gz = self.host_staging(&name);
        let direct = self.direct()?;
        let copy =
            hs::copy_from_guest(&self.vm, &direct.user, direct.password, &guest_gz, &host_gz);
        let copied = self.host_run(&copy, transfer).await;
        let _ = self
            .run::<serde_json::Value>(gs::remove(&guest_gz), self.op_timeout())
            .await;
        copied?;
        let gz_local = local.with_extension("gz.part");
        let host = self.hv.host(self.host);
        let fetched = host.get_file(&host_gz, &gz_local).await;
        let _ = self
            .host_run(&super::scripts::files::remove(&host_gz), self.op_timeout())
            .await;
        fetched.map_err(|e| e.into_backend(&self.vm, true))?;
        let part = local.with_extension("part");
        let unpacked = archive::gunzip(&gz_local, &part);
        let _ = std::fs::remove_file(&gz_local);
        let (size, sha256) =
            unpacked.map_err(BackendError::io("unpack a downloaded file", &part))?;
        if size != packed.length || !sha256.eq_ignore_ascii_case(&packed.hash) {
            let _ = std::fs::remove_file(&part);
            return Err(BackendError::HashMismatch {
                vm: self.vm.clone(),
                path: remote.to_owned(),
                expected: packed.hash,
                actual: sha256,
            });
        }
        std::fs::rename(&part, local)
            .map_err(BackendError::io("move download into place", local))?;
        Ok(FileInfo { size, sha256 })
    }

    async fn stat(&self, remote: &str) -> Result<Option<FileInfo>> {
        let h: FileHash = self.run(gs::stat(remote), self.op_timeout()).await?;
        Ok(h.exists.then(|| FileInfo {
            size: h.length,
            sha256: h.hash.to_lowercase(),
        }))
    }

    async fn list_dir(&self, remote: &str) -> Result<Vec<DirEntry>> {
        let list: List<gs::Entry> = self.run(gs::list_dir(remote), self.op_timeout()).await?;
        Ok(list
            .0
            .into_iter()
            .map(|e| DirEntry {
                name: e.name,
                size: e.length,
                is_dir: e.is_dir,
            })
            .collect())
    }

    async fn remove(&self, remote: &str) -> Result<()> {
        self.run::<serde_json::Value>(gs::remove(remote), self.op_timeout())
            .await
            .map(|_| ())
    }

    async fn service_create(&self, spec: &ServiceSpec) -> Result<()> {
        let start = match spec.start_type {
            StartType::Boot => "boot",
            StartType::System => "system",
            StartType::Auto => "auto",
            StartType::Demand => "demand",
            StartType::Disabled => "disabled",
        };
        let depend = spec.depends_on.join("/");
        let mut args = vec![
            "create",
            &spec.name,
            "type=",
            "kernel",
            "start=",
            start,
            "binPath=",
            &spec.binary_path,
        ];
        if !depend.is_empty() {
            args.extend(["depend=", &depend]);
        }
        self.sc("guest.service_create", &args).await.map(|_| ())
    }

    async fn service_start(&self, name: &str) -> Result<ServiceState> {
        self.sc_state("guest.service_start", &["start", name]).await
    }

    /// `sc stop` returns at once; a driver whose unload waits (maps still open) reports
    /// STOP_PENDING, read back with `sc query`.
    async fn service_stop(&self, name: &str) -> Result<ServiceState> {
        self.sc("guest.service_stop", &["stop", name]).await?;
        self.service_query(name).await
    }

    async fn service_query(&self, name: &str) -> Result<ServiceState> {
        self.sc_state("guest.service_query", &["query", name]).await
    }

    async fn service_delete(&self, name: &str) -> Result<()> {
        self.sc("guest.service_delete", &["delete", name])
            .await
            .map(|_| ())
    }

    async fn set_test_signing(&self, on: bool) -> Result<()> {
        // With Secure Boot on, Windows ignores `testsigning` at boot (and newer builds refuse
        // to write it); bcdedit's exit code 0 would otherwise pass for success and every
        // test-signed driver would then fail to load.
        if on
            && self
                .hv
                .template(&self.template)
                .is_some_and(|t| t.secure_boot)
        {
            return Err(BackendError::VmState {
                vm: self.vm.clone(),
                operation: "set test signing".into(),
                message: format!(
                    "template {} has Secure Boot on, which blocks test signing: turn \
                     secure_boot off in the template or set test_signing: false",
                    self.template
                ),
            });
        }
        let value = if on { "on" } else { "off" };
        let r = self
            .native(
                "guest.set_test_signing",
                "bcdedit.exe",
                &["/set", "{current}", "testsigning", value],
            )
            .await?;
        self.checked("set test signing", "bcdedit.exe", r, &[0])
    }

    async fn set_crash_control(&self, cc: &CrashControl) -> Result<()> {
        let script = gs::set_crash_control(
            cc.dump_kind.registry_value(),
            cc.auto_reboot,
            cc.always_keep_memory_dump,
            cc.nmi_crash_dump,
        );
        let pf: gs::PageFile = self.run(script, self.op_timeout()).await?;
        page_file_check(cc.dump_kind, &pf).map_err(|e| BackendError::Guest {
            vm: self.vm.clone(),
            operation: "set crash control".into(),
            code: 0,
            message: e.to_string(),
        })
    }

    async fn set_verifier(&self, v: &Verifier) -> Result<()> {
        let flags = format!("0x{:X}", v.flags);
        let mut args: Vec<&str> = Vec::new();
        if v.drivers.is_empty() {
            args.push("/reset");
        } else {
            if v.flags == Verifier::STANDARD {
                args.push("/standard");
            } else {
                args.extend(["/flags", &flags]);
            }
            args.push("/driver");
            args.extend(v.drivers.iter().map(String::as_str));
        }
        let r = self
            .native("guest.set_verifier", "verifier.exe", &args)
            .await?;
        // 2: settings changed, effective after a reboot; 0: nothing to change.
        self.checked("set verifier", "verifier.exe", r, &[0, 2])
    }

    async fn events(&self, since_record: u64) -> Result<Vec<EventRecord>> {
        let list: List<gs::Event> = self
            .run(gs::events(since_record), self.op_timeout())
            .await?;
        Ok(list.0.into_iter().map(EventRecord::from).collect())
    }

    async fn metric(&self, name: &str) -> Result<i64> {
        let (kind, tag) = name.split_once(':').unwrap_or((name, ""));
        if !matches!(kind, "pool_bytes" | "pool_allocs") || tag.is_empty() || tag.len() > 4 {
            return Err(BackendError::Unsupported {
                backend: "hyperv",
                operation: format!(
                    "metric {name:?} (Windows guests offer pool_bytes:TAG and pool_allocs:TAG)"
                ),
            });
        }
        let u: gs::PoolUsage = self.run(gs::pool_tag(tag), self.op_timeout()).await?;
        Ok(if kind == "pool_bytes" {
            u.bytes
        } else {
            u.allocs
        })
    }

    async fn reboot(&self) -> Result<()> {
        // A short delay lets the answer leave the guest before the session drops.
        let r = self
            .native("guest.reboot", "shutdown.exe", &["/r", "/f", "/t", "2"])
            .await?;
        self.checked("reboot", "shutdown.exe", r, &[0])
    }
}

/// A WinRM or SSH connection to a guest. Guests are created fresh by every run, so there
/// is no host key or certificate to pin: SSH accepts any host key and WinRM over HTTPS any
/// certificate (both logged as warnings by lab-transport); port 5985 is HTTP with NTLM
/// sealing. Files still travel through the host, which needs no guest listener.
fn guest_transport(address: &str, g: &GuestAccess) -> Result<AnyTransport, TransportError> {
    let password = g.password.clone();
    match g.kind {
        GuestAccessKind::Ssh => {
            let auth = match (&g.private_key, password) {
                (Some(path), _) => SshAuth::KeyFile {
                    path: path.clone(),
                    passphrase: None,
                },
                (None, Some(p)) => SshAuth::Password(p),
                (None, None) => SshAuth::Agent,
            };
            let cfg = SshConfig::new(
                address,
                g.user.clone(),
                auth,
                HostKeyPolicy::InsecureAcceptAny,
            )
            .port(g.port.unwrap_or(22))
            .remote_os(RemoteOs::Windows);
            Ok(AnyTransport::Ssh(SshTransport::new(cfg)))
        }
        _ => {
            let port = g.port.unwrap_or(5986);
            let scheme = if port == 5985 {
                WinrmScheme::Http
            } else {
                WinrmScheme::Https(TlsVerify::InsecureAcceptAny)
            };
            let password = password.ok_or_else(|| TransportError::Config {
                target: address.to_owned(),
                detail: "a WinRM guest needs a password reference".into(),
            })?;
            let (domain, user) = match g.user.split_once('\\') {
                Some((d, u)) => (d.to_owned(), u.to_owned()),
                None => (String::new(), g.user.clone()),
            };
            let settings = WinrmSettings::new(
                address,
                scheme,
                WinrmAuth::Ntlm {
                    user,
                    domain,
                    password,
                },
            )
            .port(port);
            Ok(AnyTransport::Winrm(WinrmTransport::new(settings)?))
        }
    }
}

/// Why the guest's page file cannot hold the dump kind asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageFileError {
    #[error(
        "the guest has no page file, so Windows cannot write a crash dump; enable one in the base image"
    )]
    None,
    #[error(
        "a complete dump needs a page file of at least RAM + 1 MB ({need_mb} MB); the guest has {have_mb} MB"
    )]
    TooSmall { need_mb: u64, have_mb: u64 },
}

/// A dump needs a page file to be written through: none at all means no dump, and a
/// complete dump needs one of at least RAM + 1 MB (a system-managed one grows to fit).
pub fn page_file_check(
    kind: DumpKind,
    pf: &gs::PageFile,
) -> std::result::Result<(), PageFileError> {
    if kind == DumpKind::None || pf.automatic_page_file {
        return Ok(());
    }
    if pf.page_file_mb == 0 {
        return Err(PageFileError::None);
    }
    if kind == DumpKind::Complete && pf.page_file_mb < pf.ram_mb + 1 {
        return Err(PageFileError::TooSmall {
            need_mb: pf.ram_mb + 1,
            have_mb: pf.page_file_mb,
        });
    }
    Ok(())
}

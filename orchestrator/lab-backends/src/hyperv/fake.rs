//! A fake Hyper-V host with Windows guests, for the scripted PowerShell host: it answers
//! each script the way the real cmdlets and tools would (recorded output shapes), keeping
//! VM, checkpoint, file, service and event-log state, so tests can drive whole flows —
//! provision, deploy, a driver stuck in STOP_PENDING, a bugcheck that reboots the guest and
//! leaves a dump — without Hyper-V.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::archive;
use super::error::PsErrorRecord;
use super::host::scripted::{HostFiles, Reply};
use super::parse::TAG_PREFIX;
use super::script::{PsValue, Script};

/// What a guest program does when run.
#[derive(Debug, Clone)]
pub enum ExecBehavior {
    /// Exits with this code and output; `files` are written in the guest first (e.g. a
    /// Catch2 JUnit report).
    Exit {
        code: i32,
        stdout: String,
        files: Vec<(String, Vec<u8>)>,
    },
    /// The guest bugchecks with this code while the program runs.
    Bugcheck(u32),
}

type OnExec = dyn Fn(&str, &[String]) -> ExecBehavior + Send + Sync;

#[derive(Debug, Clone, Default)]
struct Service {
    start: String,
    state: u32,
    /// A stop request leaves the driver in STOP_PENDING (maps still hold its rundown).
    stop_hangs: bool,
}

#[derive(Debug, Clone, Default)]
struct GuestState {
    files: BTreeMap<String, Vec<u8>>,
    services: BTreeMap<String, Service>,
    events: Vec<Value>,
    next_record: u64,
    boot_id: String,
    test_signing: bool,
    test_signing_next: bool,
}

#[derive(Debug, Clone)]
struct Vm {
    notes: String,
    running: bool,
    guest: GuestState,
    checkpoints: BTreeMap<String, GuestState>,
    /// PowerShell Direct refusals still to give after the current boot.
    boot_refusals: u32,
}

#[derive(Default)]
struct State {
    vms: BTreeMap<String, Vm>,
    boots: u32,
    refusals_per_boot: u32,
    stop_hangs: Vec<String>,
    dump: Vec<u8>,
    /// Every script fails as if the host were unreachable.
    offline: bool,
    /// The host goes offline when a script with this op arrives.
    offline_at: Option<String>,
    /// Overrides the facts the health script reports.
    health: Option<Value>,
    /// SHA-256 of base disks the health script hashes, by path.
    base_sha: BTreeMap<String, String>,
    /// What the host debugger prints for `!analyze -v`; `None`: no debugger installed.
    debugger: Option<String>,
}

/// The fake lab. Clone it into a responder with [`FakeLab::responder`].
#[derive(Clone)]
pub struct FakeLab {
    state: Arc<Mutex<State>>,
    on_exec: Arc<OnExec>,
}

impl std::fmt::Debug for FakeLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeLab").finish_non_exhaustive()
    }
}

fn key(path: &str) -> String {
    path.to_ascii_lowercase()
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn process(code: i32, stdout: impl Into<String>) -> Reply {
    Reply::Value(
        json!({"ExitCode": code, "Stdout": stdout.into(), "Stderr": "", "TimedOut": false}),
    )
}

fn guest_error(message: String, exception: &str) -> Reply {
    Reply::Error(PsErrorRecord {
        message,
        command: None,
        fqid: "RuntimeException".into(),
        category: "NotSpecified".into(),
        exception: exception.into(),
        hresult: -2146233087,
        layer: "guest".into(),
    })
}

fn host_error(message: String, command: &str) -> Reply {
    Reply::Error(PsErrorRecord {
        message,
        command: Some(command.into()),
        fqid: format!("InvalidParameter,Microsoft.HyperV.PowerShell.Commands.{command}"),
        category: "InvalidArgument".into(),
        exception: "Microsoft.HyperV.PowerShell.VirtualizationException".into(),
        hresult: -2146233087,
        layer: "host".into(),
    })
}

/// The facts a healthy host reports: plenty of memory and disk, every base disk present
/// (with its recorded hash when asked), the switch present.
fn healthy(st: &State, s: &Script) -> Value {
    let hash = list_param(s, "Hash");
    let bases: Vec<Value> = list_param(s, "Bases")
        .into_iter()
        .map(|b| {
            let sha = hash.contains(&b).then(|| {
                st.base_sha
                    .get(&b)
                    .cloned()
                    .unwrap_or_else(|| "0".repeat(64))
            });
            json!({"Path": b, "Exists": true, "Sha256": sha})
        })
        .collect();
    let switch = (!s.str_param("Switch").is_empty()).then_some(true);
    json!({"Module": true, "FreeMemoryBytes": 1u64 << 40, "FreeDiskBytes": 1u64 << 42,
           "Bases": bases, "SwitchExists": switch})
}

/// Splits a Windows command line (MSVC rules, enough for what hvlab quotes).
fn split_args(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any, mut slashes) = (false, false, 0usize);
    for c in line.chars() {
        match c {
            '\\' => {
                slashes += 1;
                continue;
            }
            '"' => {
                cur.extend(std::iter::repeat_n('\\', slashes / 2));
                if slashes % 2 == 1 {
                    cur.push('"');
                } else {
                    quoted = !quoted;
                    any = true;
                }
            }
            ' ' | '\t' if !quoted => {
                cur.extend(std::iter::repeat_n('\\', slashes));
                if any || !cur.is_empty() {
                    args.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            _ => {
                cur.extend(std::iter::repeat_n('\\', slashes));
                cur.push(c);
            }
        }
        slashes = 0;
    }
    cur.extend(std::iter::repeat_n('\\', slashes));
    if any || !cur.is_empty() {
        args.push(cur);
    }
    args
}

fn list_param(s: &Script, name: &str) -> Vec<String> {
    match s.param(name) {
        Some(PsValue::List(v)) => v.clone(),
        _ => Vec::new(),
    }
}

fn int_param(s: &Script, name: &str) -> i64 {
    match s.param(name) {
        Some(PsValue::Int(n)) => *n,
        _ => 0,
    }
}

impl FakeLab {
    /// `on_exec` decides what guest programs (other than Windows' own tools) do.
    pub fn new(on_exec: impl Fn(&str, &[String]) -> ExecBehavior + Send + Sync + 'static) -> Self {
        FakeLab {
            state: Default::default(),
            on_exec: Arc::new(on_exec),
        }
    }

    /// PowerShell Direct refuses this many calls after every boot (as it does while the
    /// guest's services start).
    pub fn refuse_after_boot(&self, n: u32) {
        self.state.lock().expect("fake lock").refusals_per_boot = n;
    }

    /// Stopping this service leaves it STOP_PENDING.
    pub fn stop_hangs(&self, service: &str) {
        self.state
            .lock()
            .expect("fake lock")
            .stop_hangs
            .push(service.to_owned());
    }

    /// The bytes a bugcheck writes to `MEMORY.DMP`.
    pub fn set_dump(&self, dump: Vec<u8>) {
        self.state.lock().expect("fake lock").dump = dump;
    }

    /// The host has the Debugging Tools: its debugger prints `stdout` for any dump.
    pub fn set_debugger_output(&self, stdout: impl Into<String>) {
        self.state.lock().expect("fake lock").debugger = Some(stdout.into());
    }

    /// The host stops answering (connection refused) from now on.
    pub fn go_offline(&self) {
        self.state.lock().expect("fake lock").offline = true;
    }

    /// The host stops answering when the first script with `op` arrives (that one fails).
    pub fn offline_at(&self, op: &str) {
        self.state.lock().expect("fake lock").offline_at = Some(op.to_owned());
    }

    /// The health script reports these facts instead of a healthy host's.
    pub fn set_health(&self, facts: Value) {
        self.state.lock().expect("fake lock").health = Some(facts);
    }

    /// The SHA-256 the health script reports for a base disk.
    pub fn set_base_sha(&self, path: &str, sha: &str) {
        self.state
            .lock()
            .expect("fake lock")
            .base_sha
            .insert(path.to_owned(), sha.to_owned());
    }

    /// A VM that is already on the host (another run's, or not hvlab's), with its Notes.
    pub fn add_vm(&self, name: &str, notes: &str) {
        self.state.lock().expect("fake lock").vms.insert(
            name.to_owned(),
            Vm {
                notes: notes.to_owned(),
                running: true,
                guest: GuestState::default(),
                checkpoints: BTreeMap::new(),
                boot_refusals: 0,
            },
        );
    }

    /// A VM's Notes.
    pub fn notes(&self, vm: &str) -> Option<String> {
        let st = self.state.lock().expect("fake lock");
        st.vms.get(vm).map(|v| v.notes.clone())
    }

    /// Names of the VMs on the host.
    pub fn vms(&self) -> Vec<String> {
        self.state
            .lock()
            .expect("fake lock")
            .vms
            .keys()
            .cloned()
            .collect()
    }

    /// A guest file's content.
    pub fn guest_file(&self, vm: &str, path: &str) -> Option<Vec<u8>> {
        let st = self.state.lock().expect("fake lock");
        st.vms.get(vm)?.guest.files.get(&key(path)).cloned()
    }

    /// The responder to give a [`super::ScriptedHost`].
    pub fn responder(&self) -> impl Fn(&Script, &HostFiles) -> Reply + Send + Sync + 'static {
        let lab = self.clone();
        move |s, files| lab.answer(s, files)
    }

    fn boot(st: &mut State, vm: &str) {
        st.boots += 1;
        let n = st.boots;
        let refusals = st.refusals_per_boot;
        let v = st.vms.get_mut(vm).expect("vm exists");
        v.running = true;
        v.boot_refusals = refusals;
        let g = &mut v.guest;
        g.boot_id = format!("2025-01-01T00:00:{:02}.{n:07}Z", n % 60);
        g.test_signing = g.test_signing_next;
        for svc in g.services.values_mut() {
            svc.state = if matches!(svc.start.as_str(), "boot" | "system" | "auto") {
                4
            } else {
                1
            };
        }
    }

    fn bugcheck(st: &mut State, vm: &str, code: u32) {
        let dump = st.dump.clone();
        let v = st.vms.get_mut(vm).expect("vm exists");
        let g = &mut v.guest;
        g.files.insert(key(r"C:\Windows\MEMORY.DMP"), dump);
        g.next_record += 1;
        let r = g.next_record;
        g.events.push(json!({"RecordId": r, "Id": 41, "ProviderName": "Microsoft-Windows-Kernel-Power",
            "TimeCreated": "2025-01-01T00:00:00.0000000Z", "Message": "The system has rebooted without cleanly shutting down first.",
            "Data": {"BugcheckCode": code.to_string(), "BugcheckParameter1": "0x1", "BugcheckParameter2": "0x0",
                     "BugcheckParameter3": "0x0", "BugcheckParameter4": "0x0"}}));
        g.next_record += 1;
        let r = g.next_record;
        g.events.push(json!({"RecordId": r, "Id": 1001, "ProviderName": "Microsoft-Windows-WER-SystemErrorReporting",
            "TimeCreated": "2025-01-01T00:00:01.0000000Z", "Message": null,
            "Data": {"param1": format!("0x{code:08x} (0x1, 0x0, 0x0, 0x0)"), "param2": "C:\\Windows\\MEMORY.DMP"}}));
        Self::boot(st, vm);
    }

    fn answer(&self, s: &Script, files: &HostFiles) -> Reply {
        let mut st = self.state.lock().expect("fake lock");
        if st.offline_at.as_deref() == Some(s.op) {
            st.offline = true;
        }
        if st.offline {
            return Reply::Unreachable;
        }
        if s.op == "host.health" {
            return Reply::Value(st.health.clone().unwrap_or_else(|| healthy(&st, s)));
        }
        let vm_name = s
            .via
            .as_ref()
            .map(|d| d.vm.clone())
            .unwrap_or_else(|| s.str_param("Name").to_owned());
        if s.op.starts_with("guest.") {
            let Some(v) = st.vms.get_mut(&vm_name) else {
                return host_error(
                    format!("The virtual machine '{vm_name}' was not found."),
                    "InvokeCommand",
                );
            };
            if !v.running || v.boot_refusals > 0 {
                v.boot_refusals = v.boot_refusals.saturating_sub(1);
                return Reply::ps_direct_booting();
            }
            let reply = self.guest(&mut st, &vm_name, s);
            // As the real envelope does: the boot id beside a successful result, read after
            // the script's body (a reboot the body caused already shows).
            return match reply {
                Reply::Value(v) if s.reports_boot => Reply::Raw(
                    json!({"ok": true, "value": v, "boot": st.vms[&vm_name].guest.boot_id})
                        .to_string(),
                ),
                other => other,
            };
        }
        let exists = st.vms.contains_key(&vm_name);
        let missing = || {
            host_error(
                format!("no virtual machine named '{vm_name}' on this host"),
                "GetVM",
            )
        };
        match s.op {
            "vm.create" => {
                if exists {
                    return host_error(format!("a virtual machine named '{vm_name}' already exists on this host"), "NewVM");
                }
                st.vms.insert(vm_name.clone(), Vm {
                    notes: s.str_param("Notes").to_owned(),
                    running: false,
                    guest: GuestState::default(),
                    checkpoints: BTreeMap::new(),
                    boot_refusals: 0,
                });
                Reply::Value(json!({"Name": vm_name, "Id": "0f9e2c1a-0000-0000-0000-000000000001", "Path": ""}))
            }
            "host.ping" => Reply::ok(),
            "vm.list_owned" => Reply::Value(Value::Array(
                st.vms
                    .iter()
                    .filter(|(_, v)| v.notes.starts_with(TAG_PREFIX))
                    .map(|(n, v)| json!({"Name": n, "State": if v.running {"Running"} else {"Off"}, "Notes": v.notes,
                        "Created": "2025-01-01T00:00:00.0000000Z"}))
                    .collect(),
            )),
            "vm.remove" => {
                if st.vms.get(&vm_name).is_some_and(|v| !v.notes.starts_with(TAG_PREFIX)) {
                    return host_error(format!("virtual machine '{vm_name}' is not tagged as created by hvlab; not removing it"), "RemoveVM");
                }
                Reply::Value(json!({"Removed": st.vms.remove(&vm_name).is_some()}))
            }
            "file.remove" => {
                // `Remove-Item -Recurse`: the path and everything under it.
                let path = s.str_param("Path");
                let under = format!("{path}\\");
                files
                    .lock()
                    .expect("files lock")
                    .retain(|k, _| k != path && !k.starts_with(&under));
                Reply::ok()
            }
            "host.debugger_analyze" => {
                let Some(out) = st.debugger.clone() else {
                    let d = s.str_param("Debugger");
                    return Reply::Error(PsErrorRecord {
                        message: format!("no debugger at '{d}' on this host (debugger.path in the lab file)"),
                        fqid: "FileNotFoundException".into(),
                        exception: "System.IO.FileNotFoundException".into(),
                        layer: "host".into(),
                        ..Default::default()
                    });
                };
                if !files.lock().expect("files lock").contains_key(s.str_param("Dump")) {
                    return host_error(format!("no dump at '{}' on this host", s.str_param("Dump")), "TestPath");
                }
                process(0, out)
            }
            _ if !exists => missing(),
            "vm.start" => {
                if !st.vms[&vm_name].running {
                    Self::boot(&mut st, &vm_name);
                }
                Reply::ok()
            }
            "vm.stop" => {
                st.vms.get_mut(&vm_name).expect("vm").running = false;
                Reply::ok()
            }
            "vm.state" | "vm.heartbeat" => {
                let v = &st.vms[&vm_name];
                let state = if v.running { "Running" } else { "Off" };
                Reply::Value(json!({"Name": vm_name, "State": state, "Notes": v.notes,
                    "Status": if v.running { Some("Ok") } else { None }, "Enabled": true}))
            }
            "vm.set_notes" => {
                let v = st.vms.get_mut(&vm_name).expect("vm");
                if !v.notes.starts_with(TAG_PREFIX) {
                    return host_error(format!("virtual machine '{vm_name}' is not tagged as created by hvlab; not changing its notes"), "SetVM");
                }
                v.notes = s.str_param("Notes").to_owned();
                Reply::ok()
            }
            "vm.addresses" => Reply::Value(json!(["fe80::215:5dff:fe00:1", "192.168.10.21"])),
            "vm.checkpoint" => {
                let v = st.vms.get_mut(&vm_name).expect("vm");
                v.checkpoints.insert(s.str_param("Checkpoint").to_owned(), v.guest.clone());
                Reply::ok()
            }
            "vm.restore" => {
                let v = st.vms.get_mut(&vm_name).expect("vm");
                let Some(g) = v.checkpoints.get(s.str_param("Checkpoint")).cloned() else {
                    return host_error("no checkpoint".into(), "RestoreVMSnapshot");
                };
                v.guest = g;
                v.running = true;
                Reply::Value(json!({"State": "Running", "Status": "Ok", "Enabled": true}))
            }
            "vm.nmi" => {
                Self::bugcheck(&mut st, &vm_name, 0x80);
                Reply::ok()
            }
            "vm.copy_to_guest" => {
                let Some(data) = files.lock().expect("files lock").get(s.str_param("Source")).cloned() else {
                    return host_error("source file not found".into(), "CopyVMFile");
                };
                let v = st.vms.get_mut(&vm_name).expect("vm");
                v.guest.files.insert(key(s.str_param("Destination")), data);
                Reply::ok()
            }
            "vm.copy_from_guest" => {
                let v = &st.vms[&vm_name];
                let Some(data) = v.guest.files.get(&key(s.str_param("Source"))).cloned() else {
                    return host_error("Cannot find path because it does not exist.".into(), "CopyItem");
                };
                files.lock().expect("files lock").insert(s.str_param("Destination").to_owned(), data);
                Reply::ok()
            }
            other => Reply::Error(PsErrorRecord {
                message: format!("the fake host does not know {other}"),
                layer: "host".into(),
                ..Default::default()
            }),
        }
    }

    fn guest(&self, st: &mut State, vm: &str, s: &Script) -> Reply {
        let path = key(s.str_param("Path"));
        match s.op {
            "guest.boot_id" => Reply::Value(json!({"LastBootUpTime": st.vms[vm].guest.boot_id})),
            "guest.stat" => {
                let g = &st.vms[vm].guest;
                match g.files.get(&path) {
                    Some(d) => {
                        Reply::Value(json!({"Exists": true, "Length": d.len(), "Hash": sha(d)}))
                    }
                    None => Reply::Value(json!({"Exists": false, "Length": 0, "Hash": ""})),
                }
            }
            "guest.list_dir" => {
                let prefix = format!("{}\\", path.trim_end_matches('\\'));
                let g = &st.vms[vm].guest;
                Reply::Value(Value::Array(
                    g.files
                        .iter()
                        .filter_map(|(p, d)| {
                            let rest = p.strip_prefix(&prefix)?;
                            (!rest.contains('\\'))
                                .then(|| json!({"Name": rest, "Length": d.len(), "IsDir": false}))
                        })
                        .collect(),
                ))
            }
            "guest.remove" => {
                st.vms.get_mut(vm).expect("vm").guest.files.remove(&path);
                Reply::ok()
            }
            "guest.set_crash_control" => {
                Reply::Value(json!({"RamMb": 4096, "PageFileMb": 4608, "AutomaticPageFile": false}))
            }
            "guest.events" => {
                let since = int_param(s, "Since") as u64;
                let g = &st.vms[vm].guest;
                Reply::Value(Value::Array(
                    g.events
                        .iter()
                        .filter(|e| e["RecordId"].as_u64().unwrap_or(0) > since)
                        .cloned()
                        .collect(),
                ))
            }
            "guest.pool_tag" => Reply::Value(json!({"Bytes": 0, "Allocs": 0})),
            "guest.extract" => self.extract(st, vm, s),
            "guest.compress" => {
                let g = &mut st.vms.get_mut(vm).expect("vm").guest;
                let Some(data) = g.files.get(&path).cloned() else {
                    return guest_error(
                        format!(
                            "Cannot find path '{}' because it does not exist.",
                            s.str_param("Path")
                        ),
                        "System.Management.Automation.ItemNotFoundException",
                    );
                };
                let gz = archive::gzip_bytes(&data);
                let out = json!({"Length": data.len(), "Hash": sha(&data), "Compressed": gz.len()});
                g.files.insert(key(s.str_param("Out")), gz);
                Reply::Value(out)
            }
            _ if s.param("Program").is_some() => self.program(st, vm, s),
            other => guest_error(
                format!("the fake guest does not know {other}"),
                "System.NotSupportedException",
            ),
        }
    }

    fn extract(&self, st: &mut State, vm: &str, s: &Script) -> Reply {
        let g = &mut st.vms.get_mut(vm).expect("vm").guest;
        let Some(gz) = g.files.remove(&key(s.str_param("Archive"))) else {
            return guest_error(
                "tar.exe could not extract: archive missing".into(),
                "System.IO.IOException",
            );
        };
        let mut entries = BTreeMap::new();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
        let Ok(list) = ar.entries() else {
            return guest_error(
                "tar.exe could not extract: not a tar.gz".into(),
                "System.IO.IOException",
            );
        };
        for e in list {
            let Ok(mut e) = e else {
                return guest_error(
                    "tar.exe could not extract: damaged".into(),
                    "System.IO.IOException",
                );
            };
            let name = e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let mut data = Vec::new();
            let _ = e.read_to_end(&mut data);
            entries.insert(name, data);
        }
        let mut placed = Vec::new();
        for (entry, dst) in list_param(s, "Entries")
            .iter()
            .zip(list_param(s, "Destinations"))
        {
            let data = entries.remove(entry).unwrap_or_default();
            placed.push(json!({"Path": dst, "Length": data.len(), "Hash": sha(&data)}));
            g.files.insert(key(&dst), data);
        }
        Reply::Value(Value::Array(placed))
    }

    fn program(&self, st: &mut State, vm: &str, s: &Script) -> Reply {
        let program = s.str_param("Program").to_ascii_lowercase();
        let args = split_args(s.str_param("Arguments"));
        let a = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
        match program.as_str() {
            "sc.exe" => {
                let stop_hangs = st.stop_hangs.contains(&a(1).to_owned());
                let g = &mut st.vms.get_mut(vm).expect("vm").guest;
                let name = a(1).to_owned();
                let line = |state: u32| {
                    let word =
                        ["", "STOPPED", "START_PENDING", "STOP_PENDING", "RUNNING"][state as usize];
                    format!(
                        "\r\nSERVICE_NAME: {name}\r\n        TYPE               : 1  KERNEL_DRIVER\r\n        STATE              : {state}  {word}\r\n"
                    )
                };
                let fail = |what: &str, code: u32, msg: &str| {
                    process(
                        code as i32,
                        format!("[SC] {what} FAILED {code}:\r\n\r\n{msg}\r\n"),
                    )
                };
                match a(0) {
                    "create" => {
                        if g.services.contains_key(&name) {
                            return fail(
                                "CreateService",
                                1073,
                                "The specified service already exists.",
                            );
                        }
                        let start = args
                            .iter()
                            .position(|x| x == "start=")
                            .map(|i| a(i + 1))
                            .unwrap_or("demand");
                        g.services.insert(
                            name,
                            Service {
                                start: start.to_owned(),
                                state: 1,
                                stop_hangs,
                            },
                        );
                        process(0, "[SC] CreateService SUCCESS\r\n")
                    }
                    verb => {
                        let signing = g.test_signing;
                        let Some(svc) = g.services.get_mut(&name) else {
                            return fail(
                                "OpenService",
                                1060,
                                "The specified service does not exist as an installed service.",
                            );
                        };
                        match verb {
                            "start" if svc.state == 4 => fail(
                                "StartService",
                                1056,
                                "An instance of the service is already running.",
                            ),
                            "start" if !signing => fail(
                                "StartService",
                                577,
                                "Windows cannot verify the digital signature for this file.",
                            ),
                            "start" => {
                                svc.state = 4;
                                process(0, line(4))
                            }
                            "stop" if svc.state == 1 => {
                                fail("ControlService", 1062, "The service has not been started.")
                            }
                            "stop" => {
                                svc.state = if svc.stop_hangs { 3 } else { 1 };
                                process(0, line(svc.state))
                            }
                            "query" => process(0, line(svc.state)),
                            "delete" => {
                                g.services.remove(&name);
                                process(0, "[SC] DeleteService SUCCESS\r\n")
                            }
                            _ => process(1639, "invalid command"),
                        }
                    }
                }
            }
            "bcdedit.exe" => {
                st.vms.get_mut(vm).expect("vm").guest.test_signing_next = a(3) == "on";
                process(0, "The operation completed successfully.\r\n")
            }
            "verifier.exe" => process(
                2,
                "The system reboot is required for the changes to take effect.\r\n",
            ),
            "shutdown.exe" => {
                Self::boot(st, vm);
                process(0, "")
            }
            _ => match (self.on_exec)(s.str_param("Program"), &args) {
                ExecBehavior::Exit {
                    code,
                    stdout,
                    files,
                } => {
                    let g = &mut st.vms.get_mut(vm).expect("vm").guest;
                    for (p, d) in files {
                        g.files.insert(key(&p), d);
                    }
                    process(code, stdout)
                }
                ExecBehavior::Bugcheck(code) => {
                    Self::bugcheck(st, vm, code);
                    // The session dies with the guest.
                    Reply::ps_direct_booting()
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hyperv::script::windows_command_line;

    #[test]
    fn fake_splits_what_hvlab_quotes() {
        let args: Vec<String> = ["create", "a b", r"C:\x y\", r#"q"q"#, ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(split_args(&windows_command_line(&args)), args);
    }
}

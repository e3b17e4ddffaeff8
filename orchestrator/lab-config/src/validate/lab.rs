//! Lab file validation: sim or Hyper-V, templates, hosts, connections and secret references.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::{Cx, list, sha256_hex};
use crate::model::{
    Connection, Credentials, Debugger, GuestConfig, GuestTransport, Host, HyperVLab,
    HyperVTemplate, Lab, LabBackend, Origin, SecretRef, SimLab, SimTemplate, Verifier,
    VerifierFlags,
};
use crate::values::{ByteSize, SecretRefWire, Sp};
use crate::wire::lab::{
    CheckpointType, ConnectionKind, ConnectionWire, CrashDumpKind, CredentialsWire, DebuggerWire,
    GuestTransportKind, HostWire, HyperVLabWire, HyperVTemplateWire, SimLabWire, SimTemplateWire,
    VerifierWire,
};

const MIN_MEMORY: u64 = 64 << 20;
const NO_TEMPLATE: &str = "a lab needs at least one VM template";
const NO_HOST: &str = "a Hyper-V lab needs at least one host";

/// Retries of an errored unit unless the lab file says otherwise: one fresh VM is cheap
/// next to a red CI run caused by the lab.
pub const DEFAULT_INFRA_RETRIES: u32 = 1;
/// More retries than this would hide a lab that is broken rather than unlucky.
const MAX_INFRA_RETRIES: u32 = 5;

fn infra_retries(cx: &mut Cx<'_>, v: Option<&Sp<u32>>) -> u32 {
    v.map_or(DEFAULT_INFRA_RETRIES, |v| {
        cx.range_u32(v, "infra_retries", "infra_retries", 0, MAX_INFRA_RETRIES)
    })
}

fn memory(cx: &mut Cx<'_>, m: Option<&Sp<ByteSize>>, path: &str, default: u64) -> u64 {
    match m {
        None => default,
        Some(m) if m.value.0 < MIN_MEMORY => {
            cx.error(
                "range",
                m.loc,
                path,
                format!("memory must be at least 64MiB, got {} bytes", m.value.0),
            );
            default
        }
        Some(m) => m.value.0,
    }
}

fn verifier(cx: &mut Cx<'_>, v: Option<&Sp<VerifierWire>>, path: &str) -> Option<Verifier> {
    let v = v?;
    if v.drivers.is_empty() {
        cx.error(
            "empty",
            v.drivers.loc,
            format!("{path}.drivers"),
            "verifier needs at least one driver",
        );
    }
    for (i, d) in v.drivers.iter().enumerate() {
        if !d.to_ascii_lowercase().ends_with(".sys") {
            cx.error(
                "invalid-value",
                d.loc,
                format!("{path}.drivers[{i}]"),
                format!(
                    "verifier driver `{}` is not a driver image name (`name.sys`)",
                    d.value
                ),
            );
        }
    }
    let flags = match &v.flags {
        None => VerifierFlags::Standard,
        Some(f) if f.value == "standard" => VerifierFlags::Standard,
        Some(f) => {
            let t = f.trim();
            let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(h) => u32::from_str_radix(h, 16).ok(),
                None => t.parse().ok(),
            };
            match parsed {
                Some(m) if m != 0 => VerifierFlags::Mask(m),
                _ => {
                    cx.error("invalid-value", f.loc, format!("{path}.flags"), format!("invalid verifier flags `{}`: expected `standard` or a non-zero mask such as `0x209BB`", f.value));
                    VerifierFlags::Standard
                }
            }
        }
    };
    Some(Verifier {
        drivers: v.drivers.iter().map(|d| d.value.clone()).collect(),
        flags,
    })
}

fn guest_config(
    cx: &mut Cx<'_>,
    test_signing: Option<bool>,
    crash: Option<CrashDumpKind>,
    auto_reboot: Option<bool>,
    v: Option<&Sp<VerifierWire>>,
    path: &str,
) -> GuestConfig {
    GuestConfig {
        test_signing: test_signing.unwrap_or(true),
        crash_dump: crash.unwrap_or(CrashDumpKind::Kernel).into(),
        auto_reboot: auto_reboot.unwrap_or(true),
        verifier: verifier(cx, v, &format!("{path}.verifier")),
    }
}

/// The lab's default payload name (resolved against the payloads when a scenario uses it).
fn default_payload(cx: &mut Cx<'_>, w: Option<&Sp<String>>) -> Option<(String, Origin)> {
    let w = w?;
    cx.name(w, "payload", "payload");
    Some((w.value.clone(), cx.origin(w.loc)))
}

/// `debugger:`: a program path and an optional symbol path, each one non-empty line (they
/// end up on a command line, locally or in a host script).
fn debugger(cx: &mut Cx<'_>, w: Option<&Sp<DebuggerWire>>) -> Option<Debugger> {
    let w = w?;
    let line = |cx: &mut Cx<'_>, v: &Sp<String>, path: &str| {
        if v.trim().is_empty() || v.chars().any(char::is_control) {
            cx.error(
                "invalid-value",
                v.loc,
                path,
                format!("`{path}` must be one non-empty line, got {:?}", v.value),
            );
        }
    };
    line(cx, &w.path, "debugger.path");
    if let Some(s) = &w.symbol_path {
        line(cx, s, "debugger.symbol_path");
    }
    Some(Debugger {
        path: w.path.value.clone(),
        symbol_path: w.symbol_path.as_ref().map(|s| s.value.clone()),
    })
}

/// The sections every kind of lab has after its own (so diagnostics stay in file order):
/// the default payload and the debugger; then the lab, if nothing in the file was wrong.
fn lab(
    cx: &mut Cx<'_>,
    name: Sp<String>,
    description: Option<String>,
    infra_retries: u32,
    payload: Option<&Sp<String>>,
    debugger_wire: Option<&Sp<DebuggerWire>>,
    backend: LabBackend,
) -> Option<Lab> {
    let payload = default_payload(cx, payload);
    let debugger = debugger(cx, debugger_wire);
    cx.clean().then(|| Lab {
        name: name.value,
        description,
        file: cx.file.clone(),
        infra_retries,
        payload,
        debugger,
        backend,
    })
}

/// A lab's list of hosts or templates, under `key`: not empty (else the `empty` error),
/// each item with a valid name unique in the list, then checked by `item` with its path
/// (`templates[0]`), in file order.
fn named_list<T: Named, R>(
    cx: &mut Cx<'_>,
    (list, key, empty): (&Sp<Vec<T>>, &str, &str),
    what: &str,
    item: fn(&mut Cx<'_>, &T, &str) -> R,
) -> Vec<R> {
    if list.is_empty() {
        cx.error("empty", list.loc, key, empty);
    }
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for (i, t) in list.value.iter().enumerate() {
        let p = format!("{key}[{i}]");
        if cx.name(t.name(), &format!("{p}.name"), what) {
            cx.unique(&mut seen, t.name(), &format!("{p}.name"), what);
        }
        out.push(item(cx, t, &p));
    }
    out
}

/// A list item with a name of its own.
trait Named {
    fn name(&self) -> &Sp<String>;
}

impl Named for SimTemplateWire {
    fn name(&self) -> &Sp<String> {
        &self.name
    }
}

impl Named for HostWire {
    fn name(&self) -> &Sp<String> {
        &self.name
    }
}

impl Named for HyperVTemplateWire {
    fn name(&self) -> &Sp<String> {
        &self.name
    }
}

/// Validates a sim lab.
pub(crate) fn sim(cx: &mut Cx<'_>, w: SimLabWire) -> Option<Lab> {
    cx.name(&w.name, "name", "lab");
    let capacity = w
        .capacity
        .as_ref()
        .map_or(2, |c| cx.range_u32(c, "capacity", "capacity", 1, 64));
    let infra_retries = infra_retries(cx, w.infra_retries.as_ref());
    let templates = named_list(
        cx,
        (&w.templates, "templates", NO_TEMPLATE),
        "template",
        sim_template,
    );
    let backend = LabBackend::Sim(SimLab {
        capacity,
        templates,
    });
    let (payload, debugger) = (w.payload.as_ref(), w.debugger.as_ref());
    lab(
        cx,
        w.name,
        w.description,
        infra_retries,
        payload,
        debugger,
        backend,
    )
}

/// One sim template: its VM shape, boot timing and guest settings.
fn sim_template(cx: &mut Cx<'_>, t: &SimTemplateWire, p: &str) -> SimTemplate {
    let vcpus = t.vcpus.as_ref().map_or(2, |v| {
        cx.range_u32(v, &format!("{p}.vcpus"), "vcpus", 1, 64)
    });
    let boot_delay = t
        .boot_delay
        .as_ref()
        .map_or(Duration::from_millis(100), |d| d.value.0);
    let boot_timeout = cx.positive_duration(
        t.boot_timeout.as_ref(),
        &format!("{p}.boot_timeout"),
        "boot_timeout",
        Duration::from_secs(30),
    );
    if boot_delay >= boot_timeout
        && let Some(d) = &t.boot_delay
    {
        cx.error(
            "range",
            d.loc,
            format!("{p}.boot_delay"),
            "boot_delay must be shorter than boot_timeout (the boot would always time out)",
        );
    }
    SimTemplate {
        name: t.name.value.clone(),
        vcpus,
        memory_bytes: memory(cx, t.memory.as_ref(), &format!("{p}.memory"), 2 << 30),
        boot_delay,
        boot_timeout,
        guest: guest_config(
            cx,
            t.test_signing,
            t.crash_dump,
            t.auto_reboot,
            t.verifier.as_ref(),
            p,
        ),
        origin: cx.origin(t.name.loc),
    }
}

fn secret(cx: &mut Cx<'_>, s: &Sp<SecretRefWire>, path: &str) -> SecretRef {
    match &s.value {
        SecretRefWire::Env(var) => {
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                cx.error(
                    "invalid-value",
                    s.loc,
                    path,
                    format!("invalid environment variable name `{var}`"),
                );
            }
            SecretRef::Env(var.clone())
        }
        SecretRefWire::File(f) => {
            let p = Path::new(f);
            // Relative secret files are relative to the lab file, not to the working directory.
            let base = cx.file.parent().unwrap_or(Path::new("."));
            SecretRef::File(if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            })
        }
    }
}

fn credentials(cx: &mut Cx<'_>, c: &Sp<CredentialsWire>, path: &str) -> Credentials {
    if c.user.trim().is_empty() {
        cx.error(
            "invalid-value",
            c.user.loc,
            format!("{path}.user"),
            "user name is empty",
        );
    }
    Credentials {
        user: c.user.value.clone(),
        password: c
            .password
            .as_ref()
            .map(|s| secret(cx, s, &format!("{path}.password"))),
        private_key: c
            .private_key
            .as_ref()
            .map(|s| secret(cx, s, &format!("{path}.private_key"))),
    }
}

/// Validates a Hyper-V lab.
pub(crate) fn hyperv(cx: &mut Cx<'_>, w: HyperVLabWire) -> Option<Lab> {
    cx.name(&w.name, "name", "lab");
    let infra_retries = infra_retries(cx, w.infra_retries.as_ref());
    let hosts = named_list(cx, (&w.hosts, "hosts", NO_HOST), "host", host);
    let templates = named_list(
        cx,
        (&w.templates, "templates", NO_TEMPLATE),
        "template",
        hyperv_template,
    );
    let backend = LabBackend::HyperV(HyperVLab { hosts, templates });
    let (payload, debugger) = (w.payload.as_ref(), w.debugger.as_ref());
    lab(
        cx,
        w.name,
        w.description,
        infra_retries,
        payload,
        debugger,
        backend,
    )
}

/// One Hyper-V host: capacity, how it is reached, and where its VMs live.
fn host(cx: &mut Cx<'_>, h: &HostWire, p: &str) -> Host {
    let capacity = h.capacity.as_ref().map_or(1, |c| {
        cx.range_u32(c, &format!("{p}.capacity"), "capacity", 1, 256)
    });
    let connection = match &h.connection {
        None => Connection::Local,
        Some(c) => connection(cx, c, &format!("{p}.connection")),
    };
    if !matches!(connection, Connection::Local) && h.address.is_none() {
        cx.error(
            "missing",
            h.name.loc,
            format!("{p}.address"),
            format!(
                "host `{}` is reached over the network but has no `address`",
                h.name.value
            ),
        );
    }
    Host {
        name: h.name.value.clone(),
        address: h.address.as_ref().map(|a| a.value.clone()),
        connection,
        capacity,
        vm_dir: h
            .vm_dir
            .as_ref()
            .map_or_else(|| r"C:\hvlab\vms".to_owned(), |d| d.value.clone()),
        switch: h.switch.as_ref().map(|s| s.value.clone()),
        origin: cx.origin(h.name.loc),
    }
}

/// One Hyper-V template: its base disk, VM shape and guest settings.
fn hyperv_template(cx: &mut Cx<'_>, t: &HyperVTemplateWire, p: &str) -> HyperVTemplate {
    let base_vhdx_sha256 = base_disk(cx, t, p);
    let generation = match &t.generation {
        None => 2,
        Some(g) if g.value == 1 || g.value == 2 => g.value,
        Some(g) => {
            cx.error(
                "range",
                g.loc,
                format!("{p}.generation"),
                format!("VM generation must be 1 or 2, got {}", g.value),
            );
            2
        }
    };
    let guest = guest_config(
        cx,
        t.test_signing,
        t.crash_dump,
        t.auto_reboot,
        t.verifier.as_ref(),
        p,
    );
    let secure_boot = secure_boot(cx, t, &guest, generation, p);
    HyperVTemplate {
        name: t.name.value.clone(),
        base_vhdx: t.base_vhdx.value.clone(),
        base_vhdx_sha256,
        generation,
        vcpus: t.vcpus.as_ref().map_or(4, |v| {
            cx.range_u32(v, &format!("{p}.vcpus"), "vcpus", 1, 240)
        }),
        memory_bytes: memory(cx, t.memory.as_ref(), &format!("{p}.memory"), 4 << 30),
        secure_boot,
        checkpoint_type: t.checkpoint_type.unwrap_or(CheckpointType::Standard),
        boot_timeout: cx.positive_duration(
            t.boot_timeout.as_ref(),
            &format!("{p}.boot_timeout"),
            "boot_timeout",
            Duration::from_secs(300),
        ),
        guest,
        transport: guest_transport(cx, &t.guest, &format!("{p}.guest")),
        origin: cx.origin(t.name.loc),
    }
}

/// The base disk is a .vhdx; its pinned hash, if any, is returned as 64 hex digits.
fn base_disk(cx: &mut Cx<'_>, t: &HyperVTemplateWire, p: &str) -> Option<String> {
    if !t.base_vhdx.to_ascii_lowercase().ends_with(".vhdx") {
        cx.error(
            "invalid-value",
            t.base_vhdx.loc,
            format!("{p}.base_vhdx"),
            format!("base disk `{}` is not a .vhdx file", t.base_vhdx.value),
        );
    }
    t.base_vhdx_sha256.as_ref().and_then(|s| {
        let hex = sha256_hex(s);
        if hex.is_none() {
            cx.error(
                "invalid-value",
                s.loc,
                format!("{p}.base_vhdx_sha256"),
                "base disk hash must be 64 hex digits (SHA-256, as Get-FileHash prints it)",
            );
        }
        hex
    })
}

/// Secure Boot, which test signing and generation 1 VMs rule out.
fn secure_boot(
    cx: &mut Cx<'_>,
    t: &HyperVTemplateWire,
    guest: &GuestConfig,
    generation: u8,
    p: &str,
) -> bool {
    let secure_boot = t.secure_boot.as_ref().is_some_and(|s| s.value);
    if secure_boot
        && guest.test_signing
        && let Some(sb) = &t.secure_boot
    {
        cx.error(
            "conflict",
            sb.loc,
            format!("{p}.secure_boot"),
            "Secure Boot must be off when test signing is on (test-signed drivers would not load)",
        );
    }
    if secure_boot && generation == 1 {
        cx.error(
            "conflict",
            t.name.loc,
            format!("{p}.secure_boot"),
            "Secure Boot needs a generation 2 VM",
        );
    }
    secure_boot
}

/// How a host is reached: locally, or over WinRM or SSH with credentials.
fn connection(cx: &mut Cx<'_>, c: &Sp<ConnectionWire>, p: &str) -> Connection {
    let kind = c.kind.value;
    fields_of_other_kinds(cx, c, p);
    if kind == ConnectionKind::Local {
        return Connection::Local;
    }
    let creds = match &c.credentials {
        Some(cr) => credentials(cx, cr, &format!("{p}.credentials")),
        None => {
            cx.error(
                "missing",
                c.kind.loc,
                format!("{p}.credentials"),
                format!(
                    "{} connection needs `credentials` (user and a secret reference)",
                    if kind == ConnectionKind::Ssh {
                        "an ssh"
                    } else {
                        "a winrm"
                    }
                ),
            );
            Credentials {
                user: String::new(),
                password: None,
                private_key: None,
            }
        }
    };
    if let Some(port) = &c.port
        && port.value == 0
    {
        cx.error(
            "range",
            port.loc,
            format!("{p}.port"),
            "port must be from 1 to 65535",
        );
    }
    if kind == ConnectionKind::Winrm {
        winrm(cx, c, creds, p)
    } else {
        ssh(cx, c, creds, p)
    }
}

/// Fields written on a connection whose kind has none (`https` on ssh, `port` on local).
fn fields_of_other_kinds(cx: &mut Cx<'_>, c: &Sp<ConnectionWire>, p: &str) {
    let kind = c.kind.value;
    let only =
        |cx: &mut Cx<'_>, present: Option<crate::values::Loc>, field: &str, allowed: &str| {
            if let Some(loc) = present {
                cx.error(
                    "conflict",
                    loc,
                    format!("{p}.{field}"),
                    format!("`{field}` only applies to {allowed} connections"),
                );
            }
        };
    if kind != ConnectionKind::Winrm {
        only(cx, c.https.as_ref().map(|x| x.loc), "https", "winrm");
        only(
            cx,
            c.cert_sha256.as_ref().map(|x| x.loc),
            "cert_sha256",
            "winrm",
        );
    }
    if kind != ConnectionKind::Ssh {
        only(
            cx,
            c.host_key_sha256.as_ref().map(|x| x.loc),
            "host_key_sha256",
            "ssh",
        );
    }
    if kind == ConnectionKind::Local {
        only(cx, c.port.as_ref().map(|x| x.loc), "port", "winrm and ssh");
        only(
            cx,
            c.credentials.as_ref().map(|x| x.loc),
            "credentials",
            "winrm and ssh",
        );
    }
}

/// A WinRM connection: a password, and HTTPS (default) with an optional pinned certificate.
fn winrm(cx: &mut Cx<'_>, c: &ConnectionWire, creds: Credentials, p: &str) -> Connection {
    let https = c.https.as_ref().is_none_or(|h| h.value);
    if let Some(cr) = &c.credentials
        && cr.password.is_none()
    {
        cx.error(
            "missing",
            cr.loc,
            format!("{p}.credentials.password"),
            "winrm needs a password reference (`password: {env: VAR}`)",
        );
    }
    let cert = c.cert_sha256.as_ref().and_then(|s| {
        if !https {
            cx.error(
                "conflict",
                s.loc,
                format!("{p}.cert_sha256"),
                "`cert_sha256` needs `https: true`",
            );
        }
        let hex = sha256_hex(s);
        if hex.is_none() {
            cx.error(
                "invalid-value",
                s.loc,
                format!("{p}.cert_sha256"),
                "certificate fingerprint must be 64 hex digits (SHA-256)",
            );
        }
        hex
    });
    Connection::WinRm {
        port: c
            .port
            .as_ref()
            .map_or(if https { 5986 } else { 5985 }, |x| x.value),
        https,
        cert_sha256: cert,
        credentials: creds,
    }
}

/// An SSH connection: a password or private key, and an optional pinned host key.
fn ssh(cx: &mut Cx<'_>, c: &ConnectionWire, creds: Credentials, p: &str) -> Connection {
    if let Some(cr) = &c.credentials
        && cr.password.is_none()
        && cr.private_key.is_none()
    {
        cx.error(
            "missing",
            cr.loc,
            format!("{p}.credentials"),
            "ssh needs `password` or `private_key` (as `{env: VAR}` or `{file: path}`)",
        );
    }
    if let Some(pin) = &c.host_key_sha256
        && !is_openssh_sha256(&pin.value)
    {
        cx.error(
            "invalid-value",
            pin.loc,
            format!("{p}.host_key_sha256"),
            "host key fingerprint must be `SHA256:` and 43 base64 characters, as \
             `ssh-keygen -lf KEY.pub` prints it",
        );
    }
    Connection::Ssh {
        port: c.port.as_ref().map_or(22, |x| x.value),
        host_key_sha256: c.host_key_sha256.as_ref().map(|h| h.value.clone()),
        credentials: creds,
    }
}

fn guest_transport(
    cx: &mut Cx<'_>,
    g: &Sp<crate::wire::lab::GuestWire>,
    p: &str,
) -> GuestTransport {
    let kind = g
        .transport
        .as_ref()
        .map_or(GuestTransportKind::PowershellDirect, |t| t.value);
    let creds = credentials(cx, &g.credentials, &format!("{p}.credentials"));
    if kind == GuestTransportKind::PowershellDirect
        && let Some(port) = &g.port
    {
        cx.error(
            "conflict",
            port.loc,
            format!("{p}.port"),
            "`port` only applies to winrm and ssh guest transports",
        );
    }
    let has_secret = creds.password.is_some()
        || (kind == GuestTransportKind::Ssh && creds.private_key.is_some());
    if !has_secret {
        let need = if kind == GuestTransportKind::Ssh {
            "`password` or `private_key`"
        } else {
            "`password`"
        };
        cx.error(
            "missing",
            g.credentials.loc,
            format!("{p}.credentials"),
            format!(
                "guest credentials need {need} as a reference (`{{env: VAR}}` or `{{file: path}}`)"
            ),
        );
    }
    if kind != GuestTransportKind::Ssh
        && let Some(k) = &g.credentials.private_key
    {
        cx.error(
            "conflict",
            k.loc,
            format!("{p}.credentials.private_key"),
            format!(
                "`private_key` only applies to ssh; allowed here: {}",
                list(&["user", "password"])
            ),
        );
    }
    GuestTransport {
        kind,
        port: g.port.as_ref().map(|p| p.value),
        credentials: creds,
    }
}

/// OpenSSH's SHA-256 fingerprint form: `SHA256:` and the unpadded base64 of 32 bytes.
fn is_openssh_sha256(s: &str) -> bool {
    s.strip_prefix("SHA256:").is_some_and(|b| {
        b.len() == 43
            && b.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
    })
}

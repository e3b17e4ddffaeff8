//! Cmdlet contracts: every command in every generated script binds to one documented
//! parameter set (named parameters exist in it, mandatory ones are given, switches get no
//! value and value parameters get one), and cmdlets that may prompt are told not to.
//!
//! Each row names the Microsoft docs page it comes from. Rows marked `confirmed` were
//! checked against that page while writing this table; the others are from the same pages
//! as remembered and were NOT re-confirmed (listed so, rather than presented as checked).

use tree_sitter::Node;

use super::ps_parse::{catalogue, direct, parse, walk};

/// `Name` value, `Name:sw` switch; `!` mandatory, `|!` mandatory but bindable from the
/// pipeline, `@N` positional at N.
struct Cmdlet {
    name: &'static str,
    /// Docs page: base URL of the module and the page.
    doc: (&'static str, &'static str),
    confirmed: bool,
    /// ConfirmImpact High, or documented to prompt: needs `-Confirm:$false` or `-Force`.
    prompts: bool,
    /// Supports ShouldProcess (`-WhatIf`, `-Confirm`).
    should_process: bool,
    sets: &'static [&'static [&'static str]],
}

const HV: &str = "https://learn.microsoft.com/powershell/module/hyper-v/";
const MGMT: &str = "https://learn.microsoft.com/powershell/module/microsoft.powershell.management/";
const UTIL: &str = "https://learn.microsoft.com/powershell/module/microsoft.powershell.utility/";
const CORE: &str = "https://learn.microsoft.com/powershell/module/microsoft.powershell.core/";
const SEC: &str = "https://learn.microsoft.com/powershell/module/microsoft.powershell.security/";

macro_rules! c {
    ($n:literal, $base:expr, $page:literal, $conf:literal, $prompts:literal, $sp:literal, [$([$($p:literal),*]),*]) => {
        Cmdlet { name: $n, doc: ($base, $page), confirmed: $conf, prompts: $prompts, should_process: $sp,
                 sets: &[$(&[$($p),*]),*] }
    };
}

const CMDLETS: &[Cmdlet] = &[
    // Hyper-V (docs: HV + page).
    c!(
        "Get-VM",
        HV,
        "get-vm",
        false,
        false,
        false,
        [["Name@0"], ["Id!"]]
    ),
    // The host health check: switches listed by name in hvlab's own filter.
    c!(
        "Get-VMSwitch",
        HV,
        "get-vmswitch",
        false,
        false,
        false,
        [["Name@0"]]
    ),
    c!(
        "Get-Module",
        CORE,
        "get-module",
        false,
        false,
        false,
        [["Name@0", "ListAvailable:sw"]]
    ),
    c!(
        "New-VHD",
        HV,
        "new-vhd",
        false,
        false,
        true,
        [["Path!@0", "ParentPath!@1", "Differencing:sw", "SizeBytes"]]
    ),
    c!(
        "New-VM",
        HV,
        "new-vm",
        false,
        false,
        true,
        [[
            "Name@0",
            "MemoryStartupBytes",
            "Generation",
            "VHDPath",
            "Path",
            "SwitchName"
        ]]
    ),
    c!(
        "Set-VM",
        HV,
        "set-vm",
        false,
        false,
        true,
        [
            [
                "VM|!@0",
                "StaticMemory:sw",
                "ProcessorCount",
                "CheckpointType",
                "AutomaticStopAction",
                "Notes"
            ],
            [
                "Name!@0",
                "StaticMemory:sw",
                "ProcessorCount",
                "CheckpointType",
                "AutomaticStopAction",
                "Notes"
            ]
        ]
    ),
    c!(
        "Set-VMFirmware",
        HV,
        "set-vmfirmware",
        true,
        false,
        true,
        [
            ["VMName!@0", "EnableSecureBoot"],
            ["VM|!@0", "EnableSecureBoot"],
            ["VMFirmware|!@0", "EnableSecureBoot"]
        ]
    ),
    c!(
        "Get-VMIntegrationService",
        HV,
        "get-vmintegrationservice",
        false,
        false,
        false,
        [["VM|!@0", "Name"], ["VMName!@0", "Name"]]
    ),
    c!(
        "Enable-VMIntegrationService",
        HV,
        "enable-vmintegrationservice",
        false,
        false,
        true,
        [
            ["VMIntegrationService|!@0"],
            ["VM|!@0", "Name!"],
            ["VMName!@0", "Name!"]
        ]
    ),
    c!(
        "Connect-VMNetworkAdapter",
        HV,
        "connect-vmnetworkadapter",
        false,
        false,
        false,
        [
            ["VMName!@0", "Name", "SwitchName!"],
            ["VMNetworkAdapter|!@0", "SwitchName!"]
        ]
    ),
    c!(
        "Start-VM",
        HV,
        "start-vm",
        false,
        false,
        true,
        [["Name!@0"], ["VM|!@0"]]
    ),
    c!(
        "Stop-VM",
        HV,
        "stop-vm",
        false,
        true,
        true,
        [
            ["Name!@0", "Force:sw", "TurnOff:sw", "Save:sw"],
            ["VM|!@0", "Force:sw", "TurnOff:sw", "Save:sw"]
        ]
    ),
    c!(
        "Get-VMNetworkAdapter",
        HV,
        "get-vmnetworkadapter",
        false,
        false,
        false,
        [["VM|!@0", "Name"], ["VMName!@0", "Name"]]
    ),
    c!(
        "Get-VMSnapshot",
        HV,
        "get-vmsnapshot",
        false,
        false,
        false,
        [["VM|!@0", "Name"], ["VMName!@0", "Name"]]
    ),
    c!(
        "Remove-VMSnapshot",
        HV,
        "remove-vmsnapshot",
        false,
        true,
        true,
        [
            ["VMSnapshot|!@0", "IncludeAllChildSnapshots:sw"],
            ["VMName!@0", "Name@1"],
            ["VM|!@0", "Name@1"]
        ]
    ),
    c!(
        "Checkpoint-VM",
        HV,
        "checkpoint-vm",
        false,
        false,
        true,
        [["Name!@0", "SnapshotName"], ["VM|!@0", "SnapshotName"]]
    ),
    c!(
        "Restore-VMSnapshot",
        HV,
        "restore-vmsnapshot",
        true,
        true,
        true,
        [
            ["Name!@0", "VMName!@1"],
            ["VMSnapshot|!@0"],
            ["VM|!@0", "Name!@1"]
        ]
    ),
    c!(
        "Get-VMHardDiskDrive",
        HV,
        "get-vmharddiskdrive",
        false,
        false,
        false,
        [["VM|!@0"], ["VMName!@0"]]
    ),
    c!(
        "Remove-VM",
        HV,
        "remove-vm",
        false,
        true,
        true,
        [["Name!@0", "Force:sw"], ["VM|!@0", "Force:sw"]]
    ),
    c!(
        "Debug-VM",
        HV,
        "debug-vm",
        true,
        true,
        true,
        [
            ["Name!@0", "Force:sw", "InjectNonMaskableInterrupt:sw"],
            ["VM|!@0", "Force:sw", "InjectNonMaskableInterrupt:sw"]
        ]
    ),
    c!(
        "Copy-VMFile",
        HV,
        "copy-vmfile",
        true,
        false,
        true,
        [
            [
                "Name!@0",
                "SourcePath!@1",
                "DestinationPath!@2",
                "FileSource!",
                "CreateFullPath:sw",
                "Force:sw"
            ],
            [
                "VM|!@0",
                "SourcePath!@1",
                "DestinationPath!@2",
                "FileSource!",
                "CreateFullPath:sw",
                "Force:sw"
            ]
        ]
    ),
    // PowerShell Core / Management / Utility / Security.
    c!(
        "Invoke-Command",
        CORE,
        "invoke-command",
        false,
        false,
        false,
        [
            ["VMName!@0", "Credential!", "ScriptBlock!", "ArgumentList"],
            ["ScriptBlock!@0", "ArgumentList"]
        ]
    ),
    c!(
        "New-PSSession",
        CORE,
        "new-pssession",
        false,
        false,
        false,
        [["VMName!", "Credential!"]]
    ),
    c!(
        "Remove-PSSession",
        CORE,
        "remove-pssession",
        false,
        false,
        true,
        [["Session|!@0"], ["Id!@0"]]
    ),
    c!(
        "Where-Object",
        CORE,
        "where-object",
        false,
        false,
        false,
        [["FilterScript!@0", "InputObject"]]
    ),
    c!(
        "ForEach-Object",
        CORE,
        "foreach-object",
        false,
        false,
        false,
        [["Process!@0", "InputObject"]]
    ),
    c!(
        "Out-Null",
        CORE,
        "out-null",
        false,
        false,
        false,
        [["InputObject"]]
    ),
    c!(
        "Copy-Item",
        MGMT,
        "copy-item",
        true,
        false,
        true,
        [
            [
                "Path!@0",
                "Destination@1",
                "Force:sw",
                "FromSession",
                "ToSession",
                "Recurse:sw"
            ],
            [
                "LiteralPath!",
                "Destination@1",
                "Force:sw",
                "FromSession",
                "ToSession",
                "Recurse:sw"
            ]
        ]
    ),
    c!(
        "Remove-Item",
        MGMT,
        "remove-item",
        false,
        true,
        true,
        [
            ["Path!@0", "Recurse:sw", "Force:sw"],
            ["LiteralPath!", "Recurse:sw", "Force:sw"]
        ]
    ),
    c!(
        "Move-Item",
        MGMT,
        "move-item",
        false,
        false,
        true,
        [
            ["Path!@0", "Destination@1", "Force:sw"],
            ["LiteralPath!", "Destination@1", "Force:sw"]
        ]
    ),
    c!(
        "New-Item",
        MGMT,
        "new-item",
        false,
        false,
        true,
        [["Path!@0", "ItemType", "Force:sw", "Value"]]
    ),
    c!(
        "New-ItemProperty",
        MGMT,
        "new-itemproperty",
        false,
        false,
        true,
        [
            ["Path!@0", "Name!@1", "PropertyType", "Value", "Force:sw"],
            [
                "LiteralPath!",
                "Name!@1",
                "PropertyType",
                "Value",
                "Force:sw"
            ]
        ]
    ),
    c!(
        "Get-Item",
        MGMT,
        "get-item",
        false,
        false,
        false,
        [["Path!@0", "Force:sw"], ["LiteralPath!", "Force:sw"]]
    ),
    c!(
        "Get-ChildItem",
        MGMT,
        "get-childitem",
        false,
        false,
        false,
        [["Path@0", "Force:sw"], ["LiteralPath!", "Force:sw"]]
    ),
    c!(
        "Test-Path",
        MGMT,
        "test-path",
        false,
        false,
        false,
        [["Path!@0", "PathType"], ["LiteralPath!", "PathType"]]
    ),
    c!(
        "Join-Path",
        MGMT,
        "join-path",
        false,
        false,
        false,
        [["Path!@0", "ChildPath!@1"]]
    ),
    c!(
        "Split-Path",
        MGMT,
        "split-path",
        false,
        false,
        false,
        [["Path!@0", "Parent:sw"], ["LiteralPath!", "Parent:sw"]]
    ),
    c!(
        "Get-FileHash",
        UTIL,
        "get-filehash",
        false,
        false,
        false,
        [["Path!@0", "Algorithm"], ["LiteralPath!", "Algorithm"]]
    ),
    c!(
        "ConvertTo-Json",
        UTIL,
        "convertto-json",
        false,
        false,
        false,
        [["InputObject|!@0", "Compress:sw", "Depth"]]
    ),
    c!(
        "New-Object",
        UTIL,
        "new-object",
        false,
        false,
        false,
        [["TypeName!@0", "ArgumentList@1"]]
    ),
    c!(
        "Sort-Object",
        UTIL,
        "sort-object",
        false,
        false,
        false,
        [["Property@0"]]
    ),
    c!(
        "Add-Type",
        UTIL,
        "add-type",
        false,
        false,
        false,
        [["TypeDefinition!@0"]]
    ),
    c!(
        "ConvertTo-SecureString",
        SEC,
        "convertto-securestring",
        false,
        false,
        false,
        [["String|!@0", "AsPlainText:sw", "Force:sw"]]
    ),
    c!(
        "Get-CimInstance",
        "https://learn.microsoft.com/powershell/module/cimcmdlets/",
        "get-ciminstance",
        false,
        false,
        false,
        [["ClassName!@0"]]
    ),
    c!(
        "Get-WinEvent",
        "https://learn.microsoft.com/powershell/module/microsoft.powershell.diagnostics/",
        "get-winevent",
        false,
        false,
        false,
        [["LogName@0", "FilterXPath", "MaxEvents"]]
    ),
];

/// Defined by the scripts themselves, or native programs.
const OWN: &[&str] = &[
    "ConvertTo-HvlabJson",
    "New-HvlabError",
    "Invoke-HvlabProcess",
    "taskkill.exe",
];
/// Common parameters every cmdlet takes.
const COMMON: &[&str] = &["ErrorAction", "WarningAction", "Verbose", "ErrorVariable"];

struct Spec<'a> {
    name: &'a str,
    switch: bool,
    mandatory: bool,
    from_pipe: bool,
    position: Option<usize>,
}

fn spec(p: &str) -> Spec<'_> {
    let (head, pos) = match p.split_once('@') {
        Some((h, n)) => (h, n.parse().ok()),
        None => (p, None),
    };
    let mandatory = head.ends_with('!');
    let from_pipe = head.ends_with("|!");
    let head = head.trim_end_matches('!').trim_end_matches('|');
    let (name, switch) = match head.strip_suffix(":sw") {
        Some(n) => (n, true),
        None => (head, false),
    };
    Spec {
        name,
        switch,
        mandatory,
        from_pipe,
        position: pos,
    }
}

/// One invocation: named parameters (with whether `-P:value` gave a value) and arguments.
#[derive(Debug)]
struct Call {
    name: String,
    piped: bool,
    /// (parameter, colon value, following argument present)
    named: Vec<(String, Option<String>, Option<String>)>,
    args: Vec<String>,
    text: String,
}

fn calls(text: &str) -> Vec<Call> {
    let (tree, text) = parse(text);
    let mut out = Vec::new();
    walk(tree.root_node(), &mut |n: Node| {
        if n.kind() != "command" {
            return;
        }
        let mut c = n.walk();
        let kids: Vec<Node> = n.children(&mut c).collect();
        let Some(name) = kids
            .iter()
            .find(|k| k.kind() == "command_name" || k.kind() == "command_name_expr")
        else {
            return;
        };
        let piped = n.prev_sibling().is_some_and(|p| p.kind() == "|");
        let mut call = Call {
            name: text[name.byte_range()].to_owned(),
            piped,
            named: vec![],
            args: vec![],
            text: text[n.byte_range()].to_owned(),
        };
        if let Some(el) = kids.iter().find(|k| k.kind() == "command_elements") {
            let mut c = el.walk();
            let items: Vec<Node> = el
                .children(&mut c)
                .filter(|k| k.kind() != "redirection")
                .collect();
            let mut i = 0;
            while i < items.len() {
                let k = items[i];
                let t = text[k.byte_range()].to_owned();
                if k.kind() == "command_parameter" {
                    let colon = items.get(i + 1).is_some_and(|s| {
                        s.kind() == "command_argument_sep" && text[s.byte_range()].trim() == ":"
                    });
                    if colon {
                        let v = items.get(i + 2).map(|v| text[v.byte_range()].to_owned());
                        call.named.push((
                            t.trim_start_matches('-').trim_end_matches(':').to_owned(),
                            v,
                            None,
                        ));
                        i += 3;
                        continue;
                    }
                    let next = items[i + 1..]
                        .iter()
                        .find(|s| s.kind() != "command_argument_sep")
                        .filter(|s| s.kind() != "command_parameter")
                        .map(|s| text[s.byte_range()].to_owned());
                    call.named
                        .push((t.trim_start_matches('-').to_owned(), None, next));
                } else if k.kind() != "command_argument_sep" {
                    call.args.push(t);
                }
                i += 1;
            }
        }
        out.push(call);
    });
    out
}

/// The set names `call` binds to, or why none.
fn bind(cmd: &Cmdlet, call: &Call) -> Result<Vec<usize>, String> {
    let mut ok = Vec::new();
    let mut why = Vec::new();
    'sets: for (si, set) in cmd.sets.iter().enumerate() {
        let specs: Vec<Spec> = set.iter().map(|p| spec(p)).collect();
        let mut args = call.args.clone();
        let mut given = Vec::new();
        for (p, colon, next) in &call.named {
            let sp = specs.iter().find(|s| s.name.eq_ignore_ascii_case(p));
            let common = COMMON.iter().any(|c| c.eq_ignore_ascii_case(p))
                || (cmd.should_process
                    && ["Confirm", "WhatIf"]
                        .iter()
                        .any(|c| c.eq_ignore_ascii_case(p)));
            match (sp, common) {
                (Some(s), _) if s.switch => given.push(s.name),
                (Some(s), _) => {
                    if colon.is_none() {
                        // The value is the next argument: take it from the positional list.
                        let Some(v) = next else {
                            why.push(format!("set {si}: -{p} has no value"));
                            continue 'sets;
                        };
                        if let Some(at) = args.iter().position(|a| a == v) {
                            args.remove(at);
                        }
                    }
                    given.push(s.name)
                }
                (None, true) => {
                    if p.eq_ignore_ascii_case("ErrorAction")
                        && colon.is_none()
                        && let Some(v) = next
                        && let Some(at) = args.iter().position(|a| a == v)
                    {
                        args.remove(at);
                    }
                }
                (None, false) => {
                    why.push(format!("set {si}: no -{p}"));
                    continue 'sets;
                }
            }
        }
        let mut free: Vec<&Spec> = specs
            .iter()
            .filter(|s| s.position.is_some() && !given.contains(&s.name))
            .collect();
        free.sort_by_key(|s| s.position);
        if args.len() > free.len() {
            why.push(format!("set {si}: {} positional arguments", args.len()));
            continue;
        }
        given.extend(free.iter().take(args.len()).map(|s| s.name));
        for s in &specs {
            if s.mandatory && !given.contains(&s.name) && !(s.from_pipe && call.piped) {
                why.push(format!("set {si}: mandatory -{} missing", s.name));
                continue 'sets;
            }
        }
        ok.push(si);
    }
    if ok.is_empty() {
        Err(why.join("; "))
    } else {
        Ok(ok)
    }
}

#[test]
fn every_command_binds_to_a_documented_parameter_set_and_never_prompts() {
    let mut checked = 0;
    let mut seen = std::collections::BTreeSet::new();
    for script in catalogue(r"C:\x\a.bin") {
        for s in [script.clone(), script.through(direct("vm"))] {
            for call in calls(&s.render()) {
                // `& { ... }` runs a script block: not a command to bind.
                if OWN.contains(&call.name.as_str()) || call.name.starts_with('{') {
                    continue;
                }
                let cmd = CMDLETS
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(&call.name))
                    .unwrap_or_else(|| {
                        panic!("{}: `{}` is not in the contract table", s.op, call.name)
                    });
                let sets = bind(cmd, &call).unwrap_or_else(|e| {
                    panic!(
                        "{}: `{}` binds to no set of {}{}{}: {e}",
                        s.op,
                        call.text.trim(),
                        cmd.doc.0,
                        cmd.doc.1,
                        if cmd.confirmed {
                            ""
                        } else {
                            " (row not re-confirmed)"
                        }
                    )
                });
                // Several matches: PowerShell picks the default (first) set, which must be one.
                assert!(
                    sets.len() == 1 || sets.contains(&0),
                    "{}: `{}` is ambiguous: sets {sets:?}",
                    s.op,
                    call.text.trim()
                );
                if cmd.prompts {
                    let no_prompt = call.named.iter().any(|(p, v, _)| {
                        (p.eq_ignore_ascii_case("Confirm") && v.as_deref() == Some("$false"))
                            || p.eq_ignore_ascii_case("Force")
                    });
                    assert!(
                        no_prompt,
                        "{}: `{}` may prompt: add -Confirm:$false or -Force",
                        s.op,
                        call.text.trim()
                    );
                }
                seen.insert(cmd.name);
                checked += 1;
            }
        }
    }
    eprintln!("checked {checked} invocations of {} cmdlets", seen.len());
    let unused: Vec<_> = CMDLETS
        .iter()
        .filter(|c| !seen.contains(c.name))
        .map(|c| c.name)
        .collect();
    assert!(unused.is_empty(), "rows no script uses: {unused:?}");
}

/// The binder rejects what PowerShell would reject.
#[test]
fn the_binder_catches_wrong_calls() {
    let find = |n: &str| CMDLETS.iter().find(|c| c.name == n).unwrap();
    for (cmd, text) in [
        (
            "Copy-VMFile",
            "Copy-VMFile -VM $vm -SourcePath a -DestinationPath b",
        ),
        ("Debug-VM", "Debug-VM -VM $vm -Nmi"),
        ("Set-VMFirmware", "Set-VMFirmware -VM $vm -EnableSecureBoot"),
        ("Restore-VMSnapshot", "Restore-VMSnapshot -Name x"),
    ] {
        let call = calls(text).remove(0);
        assert!(bind(find(cmd), &call).is_err(), "{text}");
    }
}
